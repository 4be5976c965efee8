"""The catalogue: models, their offers by region, limits, prices and rate limits.

``data/models.yaml`` (plus overrides and downloaded updates) becomes frozen
:class:`ModelSpec` / :class:`Offer` records (``records``), read and validated by the
``parse_*`` modules; names resolve through aliases, snapshots and name rules (``core``);
``installed`` keeps downloaded catalogues and rolls them back; ``diff`` says what changed.

May use: ``base`` and ``tokens`` (a model names its tokenizer family, chat template and media
rule). Never counting by model, pricing, limits, the meter or any face.
"""

from .core import Catalogue, default_catalogue, resolve
from .records import (
    CURRENCIES,
    MODEL_KINDS,
    OVERRIDE_ENV,
    PRICE_FIELDS,
    REGION_ENV,
    SOURCE_KINDS,
    STATUSES,
    THINKING_KINDS,
    CacheRules,
    FreeQuota,
    Limits,
    ModelSpec,
    Offer,
    PriceTier,
    RateLimits,
    Source,
    ToolFee,
)

__all__ = [
    "CURRENCIES", "MODEL_KINDS", "OVERRIDE_ENV", "PRICE_FIELDS", "REGION_ENV", "SOURCE_KINDS",
    "STATUSES", "THINKING_KINDS", "CacheRules", "Catalogue", "FreeQuota", "Limits", "ModelSpec",
    "Offer", "PriceTier", "RateLimits", "Source", "ToolFee", "default_catalogue", "resolve",
]
