"""What 0.2.0 offered keeps working after the package was regrouped into layers (0.3):
every name of `qwen_meter.__all__`, the integration and client modules the README imports,
and the 0.2 module paths, which now warn and hand back the module at its new place."""

from __future__ import annotations

import importlib
import subprocess
import sys
import warnings

import pytest

import qwen_meter as qm
from qwen_meter import _moved

#: `qwen_meter.__all__` of 0.2.0, verbatim.
NAMES_0_2_0 = [
    "DEFAULT_MODEL", "Attribution", "AuthenticationFailed", "BadRequest", "BatchEstimate",
    "Budget", "BudgetExceeded", "BudgetStatus", "Catalogue", "CatalogueError",
    "CircuitBreaker", "ConfigurationError", "ContextLimitExceeded", "Cost", "CostEstimate",
    "DashScopeError", "FallbackPrice", "Gateway", "GatewayConfig", "GatewayConfigError",
    "InputDecodeError", "InvalidArgument", "InvalidRecordWarning", "InvalidArgumentType",
    "InvalidMessages",
    "InvalidRequest", "InvalidTimeout", "JsonlLog", "LimitExceeded", "Limits", "MediaError",
    "MemoryStore", "Meter", "MeteredCall", "MissingExtra", "ModelSpec", "NotOffered",
    "Observer", "Offer", "OpenTelemetryObserver", "OutputLimitExceeded", "Permit", "Preflight",
    "PriceTier", "PrometheusObserver", "QuotaExhausted", "QwenMeterCallbackHandler",
    "QwenMeterError", "RateLimit", "RateLimited", "RateLimiter", "RateLimits", "Reservation",
    "ReservationError", "ReservationExpired", "ReservationSettled", "ReservationUnknown",
    "RetryPolicy", "SQLiteLog", "ServerRateLimited", "ServerUnavailable", "Source", "Store",
    "StoreUnavailable", "TemplateProfile", "ThresholdEvent", "TokenCount", "TokenizerBackend",
    "TokenizerUnavailable", "ToolFee", "TornLineWarning", "UnknownFamily", "UnknownModel",
    "UnpricedCall", "UnsupportedClient", "Usage", "UsageLog", "UsageLogError",
    "UsageLoggingObserver", "UsageParseError", "UsageRecord", "VisionRule", "__version__",
    "attribute", "check", "classify", "cost", "count_completion", "count_file",
    "count_messages", "count_tokens", "create_gateway", "current_attribution", "decode",
    "default_catalogue", "diff_catalogues", "encode", "estimate_batch", "estimate_cost",
    "fit_messages", "forget_files", "get_profile", "get_tokenizer", "image_tokens",
    "load_backend", "normalize_request", "open_store", "read_usage", "redact",
    "region_for_url", "register_file", "register_secret", "render_messages", "resolve",
]

#: Module paths the 0.2.0 README and guides import from, and the names taken from them.
README_IMPORTS = {
    "qwen_meter.integrations": ["otel", "prometheus", "usage_logging"],
    "qwen_meter.integrations.langchain": ["QwenMeterCallbackHandler", "chat_tongyi"],
    "qwen_meter.integrations.litellm": [],
    "qwen_meter.integrations.otel": [],
    "qwen_meter.integrations.prometheus": [],
    "qwen_meter.integrations.usage_logging": [],
    "qwen_meter.report": ["load_usage", "build_report", "render"],
    "qwen_meter.clients": ["wrap"],
    "qwen_meter.clients.httpx": ["metered_client", "metered_async_client"],
    "qwen_meter.clients.dashscope": [],
    "qwen_meter.clients.openai": [],
    "qwen_meter.gateway": ["GatewayConfig", "create_gateway"],
    "qwen_meter.cli": ["main", "build_parser"],
    "qwen_meter.meter": ["Meter", "MeteredCall", "default_log_path"],
    "qwen_meter.catalogue": ["Catalogue", "ModelSpec", "Offer", "default_catalogue", "resolve"],
}


@pytest.mark.parametrize("name", NAMES_0_2_0)
def test_every_0_2_0_name_imports(name: str) -> None:
    assert name in qm.__all__
    value = getattr(qm, name)
    assert value is not None
    if name != "__version__" and not isinstance(value, str):
        # the same object whichever way it is reached
        assert getattr(importlib.import_module("qwen_meter"), name) is value


@pytest.mark.parametrize("module", sorted(README_IMPORTS))
def test_module_paths_users_import(module: str) -> None:
    loaded = importlib.import_module(module)
    for name in README_IMPORTS[module]:
        assert getattr(loaded, name) is not None, f"{module}.{name}"


@pytest.mark.parametrize("old", sorted(_moved.MOVED))
def test_0_2_module_paths_warn_and_give_the_new_module(old: str) -> None:
    new = "qwen_meter." + _moved.MOVED[old]
    code = (f"import warnings, importlib; warnings.simplefilter('error', DeprecationWarning)\n"
            f"import qwen_meter\n"
            f"try:\n    importlib.import_module('qwen_meter.{old}')\n"
            f"except DeprecationWarning as w:\n    print('warned', w)\n"
            f"warnings.simplefilter('ignore')\n"
            f"m = importlib.import_module('qwen_meter.{old}')\n"
            f"print(m is importlib.import_module('{new}'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    first = old.split(".")[0]  # qwen_meter.store.redis warns first for qwen_meter.store
    new_first = "qwen_meter." + _moved.MOVED.get(first, _moved.MOVED[old])
    assert (f"warned qwen_meter.{old} moved to {new}" in done.stdout
            or f"warned qwen_meter.{first} moved to {new_first}" in done.stdout)
    assert done.stdout.strip().endswith("True")


def test_old_module_names_as_attributes() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        assert qm.store.StoreUnavailable is qm.StoreUnavailable
        assert qm.budget.Budget is qm.Budget
        from qwen_meter.store.redis import RedisStore

        from qwen_meter.limits.store.redis import RedisStore as Moved

        assert RedisStore is Moved


def test_import_stays_light() -> None:
    code = ("import sys, qwen_meter\n"
            "heavy = [m for m in ('pandas', 'transformers', 'opentelemetry', 'uvicorn', 'httpx',"
            " 'yaml', 'qwen_meter.catalogue', 'qwen_meter.meter.pipeline', 'qwen_meter.clients')"
            " if m in sys.modules]\nprint(heavy)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
