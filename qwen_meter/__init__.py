"""qwen_meter: exact token counts, costs, budgets and rate limits for Qwen models on DashScope.

Everything public is importable from here; heavy dependencies (transformers, pandas) load
only when a feature that needs them is used.
"""

from __future__ import annotations

from .budget import Budget, BudgetStatus, Reservation, ThresholdEvent
from .catalogue import Catalogue, Limits, ModelSpec, Offer, PriceTier, resolve
from .counting import (
    DEFAULT_MODEL,
    TokenCount,
    count_completion,
    count_messages,
    count_tokens,
    decode,
    encode,
    get_tokenizer,
    render_messages,
)
from .errors import (
    BudgetExceeded,
    CatalogueError,
    ConfigurationError,
    ContextLimitExceeded,
    InputDecodeError,
    InvalidMessages,
    LimitExceeded,
    MediaError,
    NotOffered,
    OutputLimitExceeded,
    QwenMeterError,
    RateLimited,
    TokenizerUnavailable,
    UnknownFamily,
    UnknownModel,
    UsageParseError,
)
from .limiter import Permit, RateLimit, RateLimiter
from .preflight import Preflight, check, fit_messages
from .pricing import Cost, CostEstimate, cost, estimate_cost
from .store import MemoryStore, Store, StoreUnavailable, open_store
from .tokens.backends import TokenizerBackend, load_backend
from .tokens.media import VisionRule, image_tokens
from .tokens.templates import TemplateProfile, get_profile
from .usage import Usage

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Budget",
    "BudgetExceeded",
    "BudgetStatus",
    "Catalogue",
    "CatalogueError",
    "ConfigurationError",
    "ContextLimitExceeded",
    "Cost",
    "CostEstimate",
    "InputDecodeError",
    "InvalidMessages",
    "LimitExceeded",
    "Limits",
    "MediaError",
    "MemoryStore",
    "ModelSpec",
    "NotOffered",
    "Offer",
    "OutputLimitExceeded",
    "Permit",
    "Preflight",
    "PriceTier",
    "QwenMeterError",
    "RateLimit",
    "RateLimited",
    "RateLimiter",
    "Reservation",
    "Store",
    "StoreUnavailable",
    "TemplateProfile",
    "ThresholdEvent",
    "TokenCount",
    "TokenizerBackend",
    "TokenizerUnavailable",
    "UnknownFamily",
    "UnknownModel",
    "Usage",
    "UsageParseError",
    "VisionRule",
    "__version__",
    "check",
    "cost",
    "count_completion",
    "count_messages",
    "count_tokens",
    "decode",
    "encode",
    "estimate_cost",
    "fit_messages",
    "get_profile",
    "get_tokenizer",
    "image_tokens",
    "load_backend",
    "open_store",
    "render_messages",
    "resolve",
]
