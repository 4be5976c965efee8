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
from .log import JsonlLog, SQLiteLog, UsageLog, UsageRecord, read_usage
from .meter import Meter, MeteredCall, UnsupportedClient
from .preflight import Preflight, check, fit_messages
from .pricing import Cost, CostEstimate, cost, estimate_cost
from .server_errors import (
    AuthenticationFailed,
    BadRequest,
    DashScopeError,
    QuotaExhausted,
    RetryPolicy,
    ServerRateLimited,
    ServerUnavailable,
    classify,
)
from .store import MemoryStore, Store, StoreUnavailable, open_store
from .tokens.backends import TokenizerBackend, load_backend
from .tokens.media import VisionRule, image_tokens
from .tokens.templates import TemplateProfile, get_profile
from .usage import Usage

__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "AuthenticationFailed",
    "BadRequest",
    "Budget",
    "BudgetExceeded",
    "BudgetStatus",
    "Catalogue",
    "CatalogueError",
    "ConfigurationError",
    "ContextLimitExceeded",
    "Cost",
    "CostEstimate",
    "DashScopeError",
    "InputDecodeError",
    "InvalidMessages",
    "JsonlLog",
    "LimitExceeded",
    "Limits",
    "MediaError",
    "MemoryStore",
    "Meter",
    "MeteredCall",
    "ModelSpec",
    "NotOffered",
    "Offer",
    "OutputLimitExceeded",
    "Permit",
    "Preflight",
    "PriceTier",
    "QuotaExhausted",
    "QwenMeterError",
    "RateLimit",
    "RateLimited",
    "RateLimiter",
    "Reservation",
    "RetryPolicy",
    "SQLiteLog",
    "ServerRateLimited",
    "ServerUnavailable",
    "Store",
    "StoreUnavailable",
    "TemplateProfile",
    "ThresholdEvent",
    "TokenCount",
    "TokenizerBackend",
    "TokenizerUnavailable",
    "UnknownFamily",
    "UnknownModel",
    "UnsupportedClient",
    "Usage",
    "UsageLog",
    "UsageParseError",
    "UsageRecord",
    "VisionRule",
    "__version__",
    "check",
    "classify",
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
    "read_usage",
    "render_messages",
    "resolve",
]
