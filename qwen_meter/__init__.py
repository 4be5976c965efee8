"""qwen_meter: exact token counts, costs, budgets and rate limits for Qwen models on DashScope.

Everything public is importable from here; heavy dependencies (transformers, pandas) load
only when a feature that needs them is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attribution import Attribution, attribute, current_attribution
    from .budget import Budget, BudgetStatus, Reservation, ThresholdEvent
    from .catalogue import (
        Catalogue,
        Limits,
        ModelSpec,
        Offer,
        PriceTier,
        RateLimits,
        Source,
        ToolFee,
        default_catalogue,
        resolve,
    )
    from .catalogue_diff import diff_catalogues
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
    from .observers import Observer
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

_EXPORTS: dict[str, str] = {
    "Attribution": ".attribution",
    "attribute": ".attribution",
    "current_attribution": ".attribution",
    "Observer": ".observers",
    "AuthenticationFailed": ".server_errors",
    "BadRequest": ".server_errors",
    "Budget": ".budget",
    "BudgetExceeded": ".errors",
    "BudgetStatus": ".budget",
    "Catalogue": ".catalogue",
    # issue #12: catalogue records, the catalogue in use, and comparing two catalogues
    "RateLimits": ".catalogue",
    "Source": ".catalogue",
    "ToolFee": ".catalogue",
    "default_catalogue": ".catalogue",
    "diff_catalogues": ".catalogue_diff",
    "CatalogueError": ".errors",
    "ConfigurationError": ".errors",
    "ContextLimitExceeded": ".errors",
    "Cost": ".pricing",
    "CostEstimate": ".pricing",
    "DEFAULT_MODEL": ".counting",
    "DashScopeError": ".server_errors",
    "InputDecodeError": ".errors",
    "InvalidMessages": ".errors",
    "JsonlLog": ".log",
    "LimitExceeded": ".errors",
    "Limits": ".catalogue",
    "MediaError": ".errors",
    "MemoryStore": ".store",
    "Meter": ".meter",
    "MeteredCall": ".meter",
    "ModelSpec": ".catalogue",
    "NotOffered": ".errors",
    "Offer": ".catalogue",
    "OutputLimitExceeded": ".errors",
    "Permit": ".limiter",
    "Preflight": ".preflight",
    "PriceTier": ".catalogue",
    "QuotaExhausted": ".server_errors",
    "QwenMeterError": ".errors",
    "RateLimit": ".limiter",
    "RateLimited": ".errors",
    "RateLimiter": ".limiter",
    "Reservation": ".budget",
    "RetryPolicy": ".server_errors",
    "SQLiteLog": ".log",
    "ServerRateLimited": ".server_errors",
    "ServerUnavailable": ".server_errors",
    "Store": ".store",
    "StoreUnavailable": ".store",
    "TemplateProfile": ".tokens.templates",
    "ThresholdEvent": ".budget",
    "TokenCount": ".counting",
    "TokenizerBackend": ".tokens.backends",
    "TokenizerUnavailable": ".errors",
    "UnknownFamily": ".errors",
    "UnknownModel": ".errors",
    "UnsupportedClient": ".meter",
    "Usage": ".usage",
    "UsageLog": ".log",
    "UsageParseError": ".errors",
    "UsageRecord": ".log",
    "VisionRule": ".tokens.media",
    "check": ".preflight",
    "classify": ".server_errors",
    "cost": ".pricing",
    "count_completion": ".counting",
    "count_messages": ".counting",
    "count_tokens": ".counting",
    "decode": ".counting",
    "encode": ".counting",
    "estimate_cost": ".pricing",
    "fit_messages": ".preflight",
    "get_profile": ".tokens.templates",
    "get_tokenizer": ".counting",
    "image_tokens": ".tokens.media",
    "load_backend": ".tokens.backends",
    "open_store": ".store",
    "read_usage": ".log",
    "render_messages": ".counting",
    "resolve": ".catalogue",
}


def __getattr__(name: str) -> Any:
    # Each part loads on first use, so `import qwen_meter` stays cheap.
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'qwen_meter' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "Attribution",
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
    "Observer",
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
    "RateLimits",
    "Reservation",
    "RetryPolicy",
    "SQLiteLog",
    "ServerRateLimited",
    "ServerUnavailable",
    "Source",
    "Store",
    "StoreUnavailable",
    "TemplateProfile",
    "ThresholdEvent",
    "TokenCount",
    "TokenizerBackend",
    "TokenizerUnavailable",
    "ToolFee",
    "UnknownFamily",
    "UnknownModel",
    "UnsupportedClient",
    "Usage",
    "UsageLog",
    "UsageParseError",
    "UsageRecord",
    "VisionRule",
    "__version__",
    "attribute",
    "check",
    "classify",
    "cost",
    "count_completion",
    "count_messages",
    "count_tokens",
    "current_attribution",
    "decode",
    "default_catalogue",
    "diff_catalogues",
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
