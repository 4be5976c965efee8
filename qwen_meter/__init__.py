"""qwen_meter: exact token counts, costs, budgets and rate limits for Qwen models on DashScope.

Everything public is importable from here; heavy dependencies (transformers, pandas) load
only when a feature that needs them is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .attribution import Attribution, attribute, current_attribution

    # issue #13: request features (native bodies, qwen-long files, batch files)
    from .batch import BatchEstimate, estimate_batch
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
        count_file,
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
        GatewayConfigError,  # issue 16
        InputDecodeError,
        InvalidArgument,
        InvalidArgumentType,
        InvalidMessages,
        InvalidRequest,
        InvalidTimeout,
        LimitExceeded,
        MediaError,
        MissingExtra,
        NotOffered,
        OutputLimitExceeded,
        QwenMeterError,
        RateLimited,
        ReservationError,
        ReservationExpired,
        ReservationSettled,
        ReservationUnknown,
        TokenizerUnavailable,
        UnknownFamily,
        UnknownModel,
        UnpricedCall,
        UsageParseError,
    )
    from .gateway import Gateway, GatewayConfig, create_gateway  # issue 16: needs [gateway]
    from .integrations.langchain import QwenMeterCallbackHandler
    from .integrations.otel import OpenTelemetryObserver
    from .integrations.prometheus import PrometheusObserver
    from .integrations.usage_logging import UsageLoggingObserver
    from .limiter import Permit, RateLimit, RateLimiter
    from .log import (
        JsonlLog,
        SQLiteLog,
        TornLineWarning,
        UsageLog,
        UsageLogError,
        UsageRecord,
        read_usage,
        redact,
        register_secret,
    )
    from .meter import Meter, MeteredCall, UnsupportedClient
    from .observers import Observer
    from .preflight import Preflight, check, fit_messages
    from .pricing import Cost, CostEstimate, cost, estimate_cost
    from .regions import region_for_url  # issue #10
    from .request import normalize_request
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
    from .store import CircuitBreaker, MemoryStore, Store, StoreUnavailable, open_store
    from .tokens.backends import TokenizerBackend, load_backend
    from .tokens.files import forget_files, register_file
    from .tokens.media import VisionRule, image_tokens
    from .tokens.templates import TemplateProfile, get_profile
    from .unlisted import FallbackPrice  # issue #10
    from .usage import Usage

_EXPORTS: dict[str, str] = {
    # issue #10: metering policies
    "FallbackPrice": ".unlisted",
    "UnpricedCall": ".errors",
    "region_for_url": ".regions",
    # issue 16: the gateway (its dependencies load only when one of these is used)
    "Gateway": ".gateway",
    "GatewayConfig": ".gateway",
    "GatewayConfigError": ".errors",
    "create_gateway": ".gateway",
    "Attribution": ".attribution",
    "attribute": ".attribution",
    "current_attribution": ".attribution",
    "Observer": ".observers",
    # integrations (issue #17): each needs its extra, imported on first use
    "OpenTelemetryObserver": ".integrations.otel",
    "PrometheusObserver": ".integrations.prometheus",
    "QwenMeterCallbackHandler": ".integrations.langchain",
    "UsageLoggingObserver": ".integrations.usage_logging",
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
    "InvalidArgument": ".errors",
    "InvalidArgumentType": ".errors",
    "InvalidMessages": ".errors",
    "JsonlLog": ".log",
    "LimitExceeded": ".errors",
    "Limits": ".catalogue",
    "MediaError": ".errors",
    "MissingExtra": ".errors",
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
    "TornLineWarning": ".log",
    "UsageLogError": ".log",
    "redact": ".log",
    "register_secret": ".log",
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
    # issue #11 [limits]
    "InvalidTimeout": ".errors",
    "ReservationError": ".errors",
    "ReservationExpired": ".errors",
    "ReservationSettled": ".errors",
    "ReservationUnknown": ".errors",
    "CircuitBreaker": ".store",
    # issue #13
    "BatchEstimate": ".batch",
    "InvalidRequest": ".errors",
    "count_file": ".counting",
    "estimate_batch": ".batch",
    "forget_files": ".tokens.files",
    "normalize_request": ".request",
    "register_file": ".tokens.files",
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


__version__ = "0.2.0"

__all__ = [
    "DEFAULT_MODEL",
    "Attribution",
    "AuthenticationFailed",
    "BadRequest",
    "BatchEstimate",
    "Budget",
    "BudgetExceeded",
    "BudgetStatus",
    "Catalogue",
    "CatalogueError",
    "CircuitBreaker",
    "ConfigurationError",
    "ContextLimitExceeded",
    "Cost",
    "CostEstimate",
    "DashScopeError",
    "FallbackPrice",
    "Gateway",
    "GatewayConfig",
    "GatewayConfigError",
    "InputDecodeError",
    "InvalidArgument",
    "InvalidArgumentType",
    "InvalidMessages",
    "InvalidRequest",
    "InvalidTimeout",
    "JsonlLog",
    "LimitExceeded",
    "Limits",
    "MediaError",
    "MemoryStore",
    "Meter",
    "MeteredCall",
    "MissingExtra",
    "ModelSpec",
    "NotOffered",
    "Observer",
    "Offer",
    "OpenTelemetryObserver",
    "OutputLimitExceeded",
    "Permit",
    "Preflight",
    "PriceTier",
    "PrometheusObserver",
    "QuotaExhausted",
    "QwenMeterCallbackHandler",
    "QwenMeterError",
    "RateLimit",
    "RateLimited",
    "RateLimiter",
    "RateLimits",
    "Reservation",
    "ReservationError",
    "ReservationExpired",
    "ReservationSettled",
    "ReservationUnknown",
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
    "TornLineWarning",
    "UnknownFamily",
    "UnknownModel",
    "UnpricedCall",
    "UnsupportedClient",
    "Usage",
    "UsageLog",
    "UsageLogError",
    "UsageLoggingObserver",
    "UsageParseError",
    "UsageRecord",
    "VisionRule",
    "__version__",
    "attribute",
    "check",
    "classify",
    "cost",
    "count_completion",
    "count_file",
    "count_messages",
    "count_tokens",
    "create_gateway",
    "current_attribution",
    "decode",
    "default_catalogue",
    "diff_catalogues",
    "encode",
    "estimate_batch",
    "estimate_cost",
    "fit_messages",
    "forget_files",
    "get_profile",
    "get_tokenizer",
    "image_tokens",
    "load_backend",
    "normalize_request",
    "open_store",
    "read_usage",
    "redact",
    "region_for_url",
    "register_file",
    "register_secret",
    "render_messages",
    "resolve",
]
