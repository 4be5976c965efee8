"""qwen_meter: exact token counts, costs, budgets and rate limits for Qwen models on DashScope.

Everything public is importable from here; heavy dependencies (transformers, pandas) load
only when a feature that needs them is used.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from . import _moved
from .meter.adapters import set_adapter_loader

if TYPE_CHECKING:
    from .alerts import AlertDeliveryWarning, AlertObserver, AlertRules  # issue 24
    from .base.errors import (
        BudgetExceeded,
        CalibrationWarning,
        CatalogueError,
        ConfigurationError,
        ContextLimitExceeded,
        GatewayConfigError,
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
        QwenMeterWarning,
        RateLimited,
        ReservationError,
        ReservationExpired,
        ReservationSettled,
        ReservationUnknown,
        StoreUnavailableWarning,
        TokenizerUnavailable,
        UnknownFamily,
        UnknownModel,
        UnpricedCall,
        UsageParseError,
    )

    # issue #13: request features (native bodies, qwen-long files, batch files)
    from .billing.batch import BatchEstimate, estimate_batch
    from .billing.chat_counting import count_completion, count_messages, render_messages
    from .billing.counting import count_file, count_tokens, decode, encode, get_tokenizer
    from .billing.model_setup import DEFAULT_MODEL, TokenCount
    from .billing.preflight import Preflight, check, fit_messages
    from .billing.pricing import Cost, CostEstimate, cost, estimate_cost
    from .billing.request import normalize_request
    from .billing.unlisted import FallbackPrice  # issue #10
    from .billing.usage import Usage
    from .catalogue.core import Catalogue, default_catalogue, resolve
    from .catalogue.diff import diff_catalogues
    from .catalogue.records import (
        Limits,
        ModelSpec,
        Offer,
        PriceTier,
        RateLimits,
        Source,
        ToolFee,
    )
    from .catalogue.regions import region_for_url  # issue #10
    from .gateway import Gateway, GatewayConfig, create_gateway  # issue 16: needs [gateway]
    from .integrations.langchain import QwenMeterCallbackHandler
    from .integrations.otel import OpenTelemetryObserver
    from .integrations.prometheus import PrometheusObserver
    from .integrations.usage_logging import UsageLoggingObserver
    from .ledger import Ledger, LedgerError, open_ledger  # issue 24
    from .limits.budget.core import Budget
    from .limits.budget.values import BudgetStatus, Reservation, ThresholdEvent
    from .limits.limiter.core import RateLimiter
    from .limits.limiter.values import Permit, RateLimit
    from .limits.store import CircuitBreaker, MemoryStore, Store, StoreUnavailable, open_store
    from .meter.attribution import Attribution, attribute, current_attribution
    from .meter.call import MeteredCall
    from .meter.log import (
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
    from .meter.observers import Observer
    from .meter.pipeline import Meter, UnsupportedClient
    from .meter.record_checks import InvalidRecordWarning
    from .meter.server_errors import (
        AuthenticationFailed,
        BadRequest,
        DashScopeError,
        QuotaExhausted,
        RetryPolicy,
        ServerRateLimited,
        ServerUnavailable,
        classify,
    )
    from .tokens.backends import TokenizerBackend, load_backend
    from .tokens.files import forget_files, register_file
    from .tokens.media import VisionRule, image_tokens
    from .tokens.templates import TemplateProfile, get_profile

_EXPORTS: dict[str, str] = {
    # issue #10: metering policies
    "FallbackPrice": ".billing.unlisted",
    "UnpricedCall": ".base.errors",
    "region_for_url": ".catalogue.regions",
    # issue 16: the gateway (its dependencies load only when one of these is used)
    "Gateway": ".gateway",
    "GatewayConfig": ".gateway",
    "GatewayConfigError": ".base.errors",
    "create_gateway": ".gateway",
    # issue 24: the ledger (psycopg loads only when a postgresql:// ledger is opened)
    "Ledger": ".ledger",
    "LedgerError": ".ledger",
    "open_ledger": ".ledger",
    # issue 24: alerts (webhooks) for a Meter, the gateway's own too
    "AlertObserver": ".alerts", "AlertRules": ".alerts", "AlertDeliveryWarning": ".alerts",
    "Attribution": ".meter.attribution",
    "attribute": ".meter.attribution",
    "current_attribution": ".meter.attribution",
    "Observer": ".meter.observers",
    # integrations (issue #17): each needs its extra, imported on first use
    "OpenTelemetryObserver": ".integrations.otel",
    "PrometheusObserver": ".integrations.prometheus",
    "QwenMeterCallbackHandler": ".integrations.langchain",
    "UsageLoggingObserver": ".integrations.usage_logging",
    "AuthenticationFailed": ".meter.server_errors",
    "BadRequest": ".meter.server_errors",
    "Budget": ".limits.budget.core",
    "BudgetExceeded": ".base.errors",
    "BudgetStatus": ".limits.budget.values",
    "Catalogue": ".catalogue.core",
    # issue #12: catalogue records, the catalogue in use, and comparing two catalogues
    "RateLimits": ".catalogue.records",
    "Source": ".catalogue.records",
    "ToolFee": ".catalogue.records",
    "default_catalogue": ".catalogue.core",
    "diff_catalogues": ".catalogue.diff",
    "CatalogueError": ".base.errors",
    "ConfigurationError": ".base.errors",
    "ContextLimitExceeded": ".base.errors",
    "Cost": ".billing.pricing",
    "CostEstimate": ".billing.pricing",
    "DEFAULT_MODEL": ".billing.model_setup",
    "DashScopeError": ".meter.server_errors",
    "InputDecodeError": ".base.errors",
    "InvalidArgument": ".base.errors",
    "InvalidArgumentType": ".base.errors",
    "InvalidMessages": ".base.errors",
    "JsonlLog": ".meter.log",
    "LimitExceeded": ".base.errors",
    "Limits": ".catalogue.records",
    "MediaError": ".base.errors",
    "MissingExtra": ".base.errors",
    "MemoryStore": ".limits.store",
    "Meter": ".meter.pipeline",
    "MeteredCall": ".meter.call",
    "ModelSpec": ".catalogue.records",
    "NotOffered": ".base.errors",
    "Offer": ".catalogue.records",
    "OutputLimitExceeded": ".base.errors",
    "Permit": ".limits.limiter.values",
    "Preflight": ".billing.preflight",
    "PriceTier": ".catalogue.records",
    "QuotaExhausted": ".meter.server_errors",
    "QwenMeterError": ".base.errors",
    "QwenMeterWarning": ".base.errors",
    "CalibrationWarning": ".base.errors",
    "StoreUnavailableWarning": ".base.errors",
    "RateLimit": ".limits.limiter.values",
    "RateLimited": ".base.errors",
    "RateLimiter": ".limits.limiter.core",
    "Reservation": ".limits.budget.values",
    "RetryPolicy": ".meter.server_errors",
    "SQLiteLog": ".meter.log",
    "ServerRateLimited": ".meter.server_errors",
    "ServerUnavailable": ".meter.server_errors",
    "Store": ".limits.store",
    "StoreUnavailable": ".limits.store",
    "TemplateProfile": ".tokens.templates",
    "ThresholdEvent": ".limits.budget.values",
    "TokenCount": ".billing.model_setup",
    "TokenizerBackend": ".tokens.backends",
    "TokenizerUnavailable": ".base.errors",
    "UnknownFamily": ".base.errors",
    "UnknownModel": ".base.errors",
    "UnsupportedClient": ".meter.pipeline",
    "Usage": ".billing.usage",
    "UsageLog": ".meter.log",
    "UsageParseError": ".base.errors",
    "TornLineWarning": ".meter.log",
    "InvalidRecordWarning": ".meter.record_checks",
    "UsageLogError": ".meter.log",
    "redact": ".meter.log",
    "register_secret": ".meter.log",
    "UsageRecord": ".meter.log",
    "VisionRule": ".tokens.media",
    "check": ".billing.preflight",
    "classify": ".meter.server_errors",
    "cost": ".billing.pricing",
    "count_completion": ".billing.chat_counting",
    "count_messages": ".billing.chat_counting",
    "count_tokens": ".billing.counting",
    "decode": ".billing.counting",
    "encode": ".billing.counting",
    "estimate_cost": ".billing.pricing",
    "fit_messages": ".billing.preflight",
    "get_profile": ".tokens.templates",
    "get_tokenizer": ".billing.counting",
    "image_tokens": ".tokens.media",
    "load_backend": ".tokens.backends",
    "open_store": ".limits.store",
    "read_usage": ".meter.log",
    "render_messages": ".billing.chat_counting",
    "resolve": ".catalogue.core",
    # issue #11 [limits]
    "InvalidTimeout": ".base.errors",
    "ReservationError": ".base.errors",
    "ReservationExpired": ".base.errors",
    "ReservationSettled": ".base.errors",
    "ReservationUnknown": ".base.errors",
    "CircuitBreaker": ".limits.store",
    # issue #13
    "BatchEstimate": ".billing.batch",
    "InvalidRequest": ".base.errors",
    "count_file": ".billing.counting",
    "estimate_batch": ".billing.batch",
    "forget_files": ".tokens.files",
    "normalize_request": ".billing.request",
    "register_file": ".tokens.files",
}



def _client_adapters() -> Any:
    from . import clients  # the faces register with the meter from here, the top

    return clients


set_adapter_loader(_client_adapters)
_moved.install()


def __getattr__(name: str) -> Any:
    # Each part loads on first use, so `import qwen_meter` stays cheap.
    module = _EXPORTS.get(name)
    if module is None:
        if name in _moved.MOVED:  # qm.store, qm.log, ...: a 0.2 module under its old name
            return import_module(f"{__name__}.{name}")
        raise AttributeError(f"module 'qwen_meter' has no attribute {name!r}")
    value = getattr(import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__version__ = "0.2.0"

__all__ = [
    "DEFAULT_MODEL",
    "AlertDeliveryWarning",
    "AlertObserver",
    "AlertRules",
    "Attribution",
    "AuthenticationFailed",
    "BadRequest",
    "BatchEstimate",
    "Budget",
    "BudgetExceeded",
    "BudgetStatus",
    "CalibrationWarning",
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
    "InvalidRecordWarning",
    "InvalidRequest",
    "InvalidTimeout",
    "JsonlLog",
    "Ledger",
    "LedgerError",
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
    "QwenMeterWarning",
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
    "StoreUnavailableWarning",
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
    "open_ledger",
    "open_store",
    "read_usage",
    "redact",
    "region_for_url",
    "register_file",
    "register_secret",
    "render_messages",
    "resolve",
]
