"""qwen_meter: exact token counts, costs, budgets and rate limits for Qwen models on DashScope.

Everything public is importable from here; heavy dependencies (transformers, pandas) load
only when a feature that needs them is used.
"""

from __future__ import annotations

from .catalogue import Catalogue, ModelSpec, resolve
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
    ContextLimitExceeded,
    InputDecodeError,
    InvalidMessages,
    MediaError,
    OutputLimitExceeded,
    QwenMeterError,
    RateLimited,
    TokenizerUnavailable,
    UnknownFamily,
    UnknownModel,
    UsageParseError,
)
from .tokens.backends import TokenizerBackend, load_backend
from .tokens.media import VisionRule, image_tokens
from .tokens.templates import TemplateProfile, get_profile

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "BudgetExceeded",
    "Catalogue",
    "CatalogueError",
    "ContextLimitExceeded",
    "InputDecodeError",
    "InvalidMessages",
    "MediaError",
    "ModelSpec",
    "OutputLimitExceeded",
    "QwenMeterError",
    "RateLimited",
    "TemplateProfile",
    "TokenCount",
    "TokenizerBackend",
    "TokenizerUnavailable",
    "UnknownFamily",
    "UnknownModel",
    "UsageParseError",
    "VisionRule",
    "__version__",
    "count_completion",
    "count_messages",
    "count_tokens",
    "decode",
    "encode",
    "get_profile",
    "get_tokenizer",
    "image_tokens",
    "load_backend",
    "render_messages",
    "resolve",
]
