"""A LiteLLM ``CustomLogger`` that records LiteLLM's DashScope calls as qwen_meter does.

    import litellm
    from qwen_meter.integrations.litellm import QwenMeterLogger
    litellm.callbacks = [QwenMeterLogger(log="usage.jsonl")]   # or QwenMeterLogger(meter=meter)

For each call LiteLLM routes to DashScope (provider ``dashscope``, or any provider whose
``api_base`` is a DashScope host) the logger reads the usage LiteLLM got back — streams
included, from LiteLLM's assembled response — prices it with :func:`qwen_meter.cost` (tiers
with K = 1024, cache hits, thinking mode, the region's currency) and writes a
:class:`~qwen_meter.log.UsageRecord` to the usage log and to its observers (OpenTelemetry,
Prometheus, logging); with ``meter=`` it shares that meter's log, observers, region and
catalogue. The default log is the meter's default (``$QWEN_METER_LOG``, else the user's
data folder). LiteLLM's own ``response_cost`` is kept as ``metadata.litellm_cost``
for comparison. Failures are recorded with status ``error``. The region comes from the host
(``dashscope-intl`` → intl), else from ``region=``. LiteLLM's ``metadata`` (scalar values)
and ``metadata["tags"]`` and ``user`` become the record's metadata, tags and user.

The logger neither limits nor budgets: LiteLLM has already sent the call when it is told.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlparse

from ..base.errors import MissingExtra, QwenMeterError
from ..catalogue.core import Catalogue, default_catalogue

try:
    from litellm.integrations.custom_logger import CustomLogger
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("the LiteLLM logger needs litellm: "
                       'pip install ".[litellm]" (from a clone)') from exc
from ..billing.pricing import cost
from ..billing.usage import Usage
from ..meter.config import DEFAULT_LOG, _DefaultLog, default_log_path
from ..meter.log import MIN_SECRET_LENGTH, UsageLog, UsageRecord, open_log, redact
from ..meter.observers import Observer, notify
from ..meter.pipeline import Meter

#: Hosts whose region qwen_meter knows.
_HOST_REGIONS = (("dashscope-intl", "intl"), ("dashscope.aliyuncs.com", "cn"))
PROVIDER = "dashscope"
# LiteLLM's own bookkeeping inside ``metadata``: not the caller's.
_INTERNAL = frozenset({"hidden_params", "llm_api_timing_windows", "tags", "model_info",
                       "headers", "endpoint", "caching_groups", "previous_models"})


def _money(amount: Any) -> str | None:
    return None if amount is None else f"{amount.normalize():f}"


def _seconds(start: Any, end: Any) -> float | None:
    if isinstance(start, dt.datetime) and isinstance(end, dt.datetime):
        return (end - start).total_seconds()
    if isinstance(start, (int, float)) and isinstance(end, (int, float)):
        return float(end - start)
    return None


class QwenMeterLogger(CustomLogger):
    """Records LiteLLM's DashScope calls (see the module docs)."""

    def __init__(self, log: str | os.PathLike[str] | UsageLog | _DefaultLog | None = DEFAULT_LOG,
                 *, meter: Meter | None = None, region: str | None = None,
                 catalogue: Catalogue | None = None, observers: Sequence[Observer] = (),
                 providers: Sequence[str] = (PROVIDER,), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if meter is not None:
            # Share the meter's log, observers (the live list), region and catalogue, so
            # LiteLLM's calls land where the meter's own calls do.
            self.log = meter.log if isinstance(log, _DefaultLog) else open_log(log)
            self.observers = meter.observers
            self.region = region or meter.region
            self.catalogue = catalogue or meter.catalogue
            self.observers.extend(o for o in observers if o not in self.observers)
        else:
            self.log = open_log(default_log_path() if isinstance(log, _DefaultLog) else log)
            self.observers = list(observers)
            self.region = region
            self.catalogue = catalogue
        self._owns_log = meter is None or not isinstance(log, _DefaultLog)
        self.providers = tuple(providers)
        self.records: list[UsageRecord] = []  # the last few, for inspection
        self._keep = 100

    # --- LiteLLM's hooks (sync and async share _handle) ---------------------------------

    def log_success_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        self._handle(kwargs, response_obj, start_time, end_time, failed=False)

    def log_failure_event(self, kwargs: dict[str, Any], response_obj: Any, start_time: Any,
                          end_time: Any) -> None:
        self._handle(kwargs, response_obj, start_time, end_time, failed=True)

    async def async_log_success_event(self, kwargs: dict[str, Any], response_obj: Any,
                                      start_time: Any, end_time: Any) -> None:
        self._handle(kwargs, response_obj, start_time, end_time, failed=False)

    async def async_log_failure_event(self, kwargs: dict[str, Any], response_obj: Any,
                                      start_time: Any, end_time: Any) -> None:
        self._handle(kwargs, response_obj, start_time, end_time, failed=True)

    # --- recording ------------------------------------------------------------------------

    def _is_dashscope(self, provider: str | None, api_base: str | None) -> bool:
        host = urlparse(api_base or "").hostname or ""
        return provider in self.providers or "dashscope" in host

    def _region(self, api_base: str | None) -> str | None:
        host = urlparse(api_base or "").hostname or ""
        for marker, region in _HOST_REGIONS:
            if marker in host:
                return region
        return self.region

    def _handle(self, kwargs: Mapping[str, Any], response: Any, start: Any, end: Any, *,
                failed: bool) -> None:
        params = kwargs.get("litellm_params") or {}
        provider = kwargs.get("custom_llm_provider") or params.get("custom_llm_provider")
        api_base = params.get("api_base") or kwargs.get("api_base")
        if not self._is_dashscope(provider, api_base):
            return
        record = self.record(kwargs, response, start, end, failed=failed,
                             region=self._region(api_base))
        if self.log is not None:
            self.log.append(record)
        self.records = [*self.records[-self._keep + 1:], record]
        notify(self.observers, "on_record", record, None)

    def record(self, kwargs: Mapping[str, Any], response: Any, start: Any, end: Any, *,
               failed: bool, region: str | None) -> UsageRecord:
        """The usage record of one LiteLLM call."""
        params = kwargs.get("litellm_params") or {}
        model = str(kwargs.get("model") or "").split("/", 1)[-1]
        metadata = params.get("metadata") or {}
        logging_object = kwargs.get("standard_logging_object") or {}
        tags = tuple(str(t) for t in (metadata.get("tags") or ()))
        user = kwargs.get("user") or (kwargs.get("optional_params") or {}).get("user") or \
            logging_object.get("end_user") or None
        extra = {str(k): str(v) for k, v in metadata.items()
                 if k not in _INTERNAL and isinstance(v, (str, int, float, bool))}
        if logging_object.get("response_cost") is not None:
            extra["litellm_cost"] = repr(float(logging_object["response_cost"]))
        seconds = _seconds(start, end)
        common: dict[str, Any] = {
            "model": model, "region": region or os.environ.get("QWEN_METER_REGION") or "cn",
            "endpoint": "embeddings" if kwargs.get("call_type") in ("embedding",
                                                                    "aembedding") else "chat",
            "stream": bool(kwargs.get("stream")), "tags": tags,
            "user": str(user) if user else None, "metadata": extra,
            "latency_ms": None if seconds is None else round(seconds * 1000, 3)}
        if failed:
            error = kwargs.get("exception") or response
            # A server may echo the key in its error text; the record feeds the log file,
            # the logging observer's message and the span's status, so mask it once here.
            keys = (kwargs.get("api_key"), params.get("api_key"))
            return UsageRecord(status="error",
                               error=redact(str(error) or type(error).__name__,
                                            [k for k in keys if isinstance(k, str)
                                             and len(k) >= MIN_SECRET_LENGTH]),
                               error_kind=type(error).__name__,
                               http_status=getattr(error, "status_code", None), **common)
        raw = getattr(response, "usage", None)
        if raw is None and isinstance(response, Mapping):
            raw = response.get("usage")
        try:
            usage = Usage.parse(raw)
        except QwenMeterError as exc:
            return UsageRecord(status="incomplete", error=str(exc), **common)
        served = str(getattr(response, "model", None) or "").split("/", 1)[-1] or None
        priced_cost, currency, unpriced = None, None, None
        try:
            spec = (self.catalogue or default_catalogue()).resolve(model)
            priced = cost(usage, spec, region=common["region"])
            priced_cost, currency = _money(priced.amount), priced.currency
            unpriced = priced.unpriced or None
        except QwenMeterError as exc:  # unknown model or not offered there: say why
            unpriced = str(exc)
        return UsageRecord(
            request_id=getattr(response, "id", None), served_model=served,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens, cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens, image_tokens=usage.image_tokens,
            audio_tokens=usage.audio_tokens, cost=priced_cost, currency=currency,
            unpriced=unpriced, **common)

    def close(self) -> None:
        """Close the usage log (not a meter's: the meter closes its own)."""
        if self.log is not None and self._owns_log:
            self.log.close()

