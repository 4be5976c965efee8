"""OpenTelemetry: a span and GenAI metrics for every metered call (extra ``otel``).

    from qwen_meter.integrations.otel import instrument
    instrument(meter)                       # the global tracer and meter providers
    instrument(meter, tracer_provider=tp, meter_provider=mp)

Spans follow the OpenTelemetry GenAI semantic conventions — name ``"chat qwen-plus"``, kind
CLIENT, ``gen_ai.operation.name``, ``gen_ai.provider.name`` (and the older ``gen_ai.system``)
= ``dashscope``, ``gen_ai.request.model``, ``gen_ai.response.model``, ``gen_ai.response.id``,
``gen_ai.usage.input_tokens`` / ``output_tokens`` / ``cache_read.input_tokens`` /
``reasoning.output_tokens``, ``error.type`` — plus qwen_meter's own ``qwen_meter.*`` attributes
(cost, currency, region, the pre-call estimate, prompt_diff, budgets and limiter outcome, tags).

A span starts when the call begins (its start time is the moment counting began), as a child
of the span current in the caller at that moment, and ends when the usage record is written,
``latency_ms`` later — for streams, when the stream settles. Calls refused before sending get
a span with error status. Metrics: ``gen_ai.client.token.usage`` and
``gen_ai.client.operation.duration`` (histograms with the conventions' buckets), the counter
``qwen_meter.cost`` and, read at collection time only, the gauges ``qwen_meter.budget.remaining``
and ``qwen_meter.limiter.utilization``.

Nothing here runs unless :func:`instrument` (or :class:`OpenTelemetryObserver`) is used, and
``import qwen_meter`` never imports ``opentelemetry``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..base.errors import MissingExtra

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("the OpenTelemetry integration needs opentelemetry-api: "
                       'pip install ".[otel]" (from a clone)') from exc

from ..meter.observers import Observer
from . import _common as c
from .otel_metrics import DURATION_BUCKETS, SCOPE, TOKEN_BUCKETS, instruments_for

__all__ = [
    "DURATION_BUCKETS",
    "KNOWN_GENAI_SCOPES",
    "TOKEN_BUCKETS",
    "OpenTelemetryObserver",
    "instrument",
]

if TYPE_CHECKING:
    from ..meter.call import MeteredCall
    from ..meter.log import UsageRecord
    from ..meter.pipeline import Meter

_SCOPE = SCOPE
#: Instrumentation scopes of the OpenAI instrumentations whose span a call may already have.
KNOWN_GENAI_SCOPES = ("opentelemetry.instrumentation.openai_v2",
                      "opentelemetry.util.genai.handler")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("qwen-meter")
    except PackageNotFoundError:
        return "0"


class OpenTelemetryObserver(Observer):
    """Spans and metrics for the calls of the meters it observes (see the module docs).

    ``tracer_provider`` / ``meter_provider`` default to the global ones. ``with_spans=False`` or
    ``with_metrics=False`` turns one half off. ``record_user`` adds ``qwen_meter.user`` to spans
    (off by default: it is personal data in many pipelines). ``other_instrumentation`` says
    whether another GenAI instrumentation (openai-v2, LoongSuite ...) already reports the calls:
    ``None`` (default) detects it per call — a GenAI client span of another library current
    when the call begins; ``True`` trusts it for every call; ``False`` ignores it. A call it
    covers gets no span and no token / duration points of ours: its span gets qwen_meter's
    attributes instead, and the cost counter and gauges still count it.
    """

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None, with_spans: bool = True,
                 with_metrics: bool = True, record_user: bool = False,
                 other_instrumentation: bool | None = None) -> None:
        version = _version()
        self.record_user = record_user
        self.other_instrumentation = other_instrumentation
        self._with_spans = with_spans
        self._tracer = trace.get_tracer(_SCOPE, version, tracer_provider=tracer_provider)
        self._watched = c.Watched()
        # per call: (span, start, whether the span is ours, whether another library counts it)
        self._spans = c.CallSlot("otel")
        self._instruments = instruments_for(meter_provider, version) if with_metrics else None
        if self._instruments is not None:
            self._instruments.watch(self._watched)

    # --- observer events --------------------------------------------------------------------

    def on_begin(self, call: MeteredCall) -> None:
        self._watched.see(call)
        theirs = self._covering_span()
        if theirs is not None:  # another instrumentation's span: enrich it at the record
            if self._with_spans:
                theirs.set_attributes(self._begin_attributes(call, fill=theirs))
            self._spans.put(call, (theirs, 0, False, True))
            return
        if self.other_instrumentation or not self._with_spans:
            self._spans.put(call, (None, 0, False, bool(self.other_instrumentation)))
            return
        start = c.start_time_ns(call.started)
        span = self._tracer.start_span(
            f"{c.operation(call.endpoint)} {call.model}", context=otel_context.get_current(),
            kind=SpanKind.CLIENT, start_time=start,
            attributes=self._request_attributes(call.model, call.endpoint, call.stream))
        if span.is_recording():  # sampled out or no SDK: build nothing more
            span.set_attributes(self._begin_attributes(call))
        self._spans.put(call, (span, start, True, False))

    def _covering_span(self) -> Any:
        """The current span when it is another library's GenAI client span, else None."""
        if self.other_instrumentation is False:
            return None
        span = trace.get_current_span()
        if not span.is_recording():
            return None
        scope = getattr(getattr(span, "instrumentation_scope", None), "name", None)
        if scope == _SCOPE:
            return None
        if scope in KNOWN_GENAI_SCOPES:
            return span
        # Another library's model-call span (not an agent or workflow span around calls).
        attributes = getattr(span, "attributes", None) or {}
        if getattr(span, "kind", None) is SpanKind.CLIENT \
                and "gen_ai.operation.name" in attributes:
            return span
        return None

    def on_retry(self, call: MeteredCall, error: BaseException, delay: float) -> None:
        opened = self._spans.get(call)
        if opened is not None and opened[0] is not None and opened[0].is_recording():
            opened[0].add_event("qwen_meter.retry", {
                "error.type": str(getattr(error, "kind", type(error).__name__)),
                "qwen_meter.attempt": call.attempts, "qwen_meter.retry_delay_s": delay})

    def on_record(self, record: UsageRecord, call: MeteredCall | None) -> None:
        opened = self._spans.pop(call) if call is not None else None
        covered = opened[3] if opened is not None else bool(self.other_instrumentation)
        if self._instruments is not None:
            self._measure(record, covered=covered)
        if opened is not None and not opened[2]:
            span = opened[0]
            if span is not None and self._with_spans and span.is_recording():
                span.set_attributes(self._record_attributes(record, call, fill=span))
            return
        if not self._with_spans or self.other_instrumentation:
            return
        if opened is None:  # refused before it began (or observed from mid-call on)
            end = c.end_time_ns(record)
            start = end - int((record.latency_ms or 0.0) * 1_000_000)
            span = self._tracer.start_span(
                f"{c.operation(record.endpoint)} {record.model}",
                context=otel_context.get_current(), kind=SpanKind.CLIENT, start_time=start,
                attributes=self._request_attributes(record.model, record.endpoint,
                                                    record.stream))
        else:
            span, start = opened[0], opened[1]
        if span.is_recording():
            span.set_attributes(self._record_attributes(record, call))
            kind = c.error_type(record)
            if kind is not None:
                span.set_status(Status(StatusCode.ERROR, record.error or kind))
        span.end(end_time=start + int((record.latency_ms or 0.0) * 1_000_000))

    # --- attributes -------------------------------------------------------------------------

    @staticmethod
    def _request_attributes(model: str, endpoint: str, stream: bool) -> dict[str, Any]:
        return {"gen_ai.operation.name": c.operation(endpoint),
                "gen_ai.provider.name": c.PROVIDER, "gen_ai.system": c.PROVIDER,
                "gen_ai.request.model": model, "gen_ai.request.stream": stream}

    def _begin_attributes(self, call: MeteredCall, fill: Any = None) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        max_tokens = c.any_attr(call, "max_tokens")
        if max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = max_tokens
        for name, value in (c.any_attr(call, "request_params") or {}).items():
            attributes[name if name.startswith("server.") else f"gen_ai.request.{name}"] = value
        outcome = c.outcome(call)
        attributes.update({"qwen_meter.catalogue_model": call.spec.name,
                           "qwen_meter.limiter.limited": outcome.limited,
                           "qwen_meter.tokens_reserved": outcome.tokens_reserved})
        if outcome.budgets:
            attributes["qwen_meter.budgets"] = list(outcome.budgets)
            attributes["qwen_meter.budget.degraded"] = outcome.budget_degraded
        if outcome.limited:
            attributes["qwen_meter.limiter.degraded"] = outcome.limiter_degraded
        if call.estimate is not None and call.estimate.max_output_tokens is not None:
            attributes["qwen_meter.max_output_tokens"] = call.estimate.max_output_tokens
        return _filled(attributes, fill)

    def _record_attributes(self, r: UsageRecord, call: MeteredCall | None,
                           fill: Any = None) -> dict[str, Any]:
        a: dict[str, Any] = {"qwen_meter.status": r.status, "qwen_meter.attempts": r.attempts,
                             "qwen_meter.region": r.region or "cn",
                             "qwen_meter.record_id": r.id}
        optional: Mapping[str, Any] = {
            "gen_ai.response.model": r.served_model, "gen_ai.response.id": r.request_id,
            "error.type": c.error_type(r), "http.response.status_code": r.http_status,
            "qwen_meter.currency": r.currency, "qwen_meter.cost.exact": r.cost,
            "qwen_meter.unpriced": r.unpriced, "qwen_meter.prompt_diff": r.prompt_diff,
            "qwen_meter.estimate.prompt_tokens": r.estimated_prompt_tokens,
            "qwen_meter.estimate.exact": r.estimate_exact,
            "qwen_meter.estimate.cost_low": r.estimated_cost_low,
            "qwen_meter.estimate.cost_high": r.estimated_cost_high,
            "qwen_meter.user": r.user if self.record_user else None}
        a.update({k: v for k, v in optional.items() if v is not None})
        amount = c.cost_amount(r)
        if amount is not None:
            # gen_ai.usage.cost: the name OpenLIT-style dashboards read (in r.currency)
            a["qwen_meter.cost"] = a["gen_ai.usage.cost"] = float(amount)
        reasons = c.any_attr(call, "finish_reasons")
        if reasons:
            a["gen_ai.response.finish_reasons"] = list(reasons)
        if r.status not in c.FAILED:
            a.update({"gen_ai.usage.input_tokens": r.prompt_tokens,
                      "gen_ai.usage.output_tokens": r.completion_tokens,
                      "gen_ai.usage.cache_read.input_tokens": r.cached_tokens,
                      "gen_ai.usage.reasoning.output_tokens": r.reasoning_tokens,
                      "qwen_meter.usage_estimated": r.usage_estimated})
        refused = c.refusal(r)
        if refused is not None:
            a["qwen_meter.refused_by"] = refused
        if r.calibration:
            a["qwen_meter.calibration"] = r.calibration
        if r.tags:
            a["qwen_meter.tags"] = list(r.tags)
        for key, value in r.metadata.items():
            a[f"qwen_meter.metadata.{key}"] = str(value)
        if fill is not None:  # another library's span: say which provider really served it
            a["qwen_meter.provider"] = c.PROVIDER
        return _filled(a, fill)

    # --- metrics ----------------------------------------------------------------------------

    def _measure(self, r: UsageRecord, *, covered: bool) -> None:
        instruments = self._instruments
        assert instruments is not None
        attributes: dict[str, Any] = {"gen_ai.operation.name": c.operation(r.endpoint),
                                      "gen_ai.provider.name": c.PROVIDER,
                                      "gen_ai.request.model": r.model}
        if r.served_model:
            attributes["gen_ai.response.model"] = r.served_model
        kind = c.error_type(r)
        if kind is not None:
            attributes["error.type"] = kind
        if not covered:  # else the other instrumentation records tokens and duration
            self._points(r, attributes, kind)
        amount = c.cost_amount(r)
        if amount is not None and r.currency:
            instruments.cost.add(float(amount), {**attributes, "qwen_meter.currency": r.currency})

    def _points(self, r: UsageRecord, attributes: dict[str, Any], kind: str | None) -> None:
        instruments = self._instruments
        assert instruments is not None
        instruments.duration.record(c.duration_s(r), attributes)
        if kind is None:
            instruments.tokens.record(r.prompt_tokens,
                                      {**attributes, "gen_ai.token.type": "input"})
            if r.endpoint != "embeddings":
                instruments.tokens.record(r.completion_tokens,
                                          {**attributes, "gen_ai.token.type": "output"})


def _filled(attributes: dict[str, Any], span: Any) -> dict[str, Any]:
    """``attributes`` for another library's ``span``: its own values are left as they are;
    qwen_meter's are added (``qwen_meter.*``, and what it left out)."""
    if span is None:
        return attributes
    theirs = getattr(span, "attributes", None) or {}
    return {k: v for k, v in attributes.items()
            if k.startswith("qwen_meter.") or k not in theirs}


def instrument(meter: Meter, *, tracer_provider: trace.TracerProvider | None = None,
               meter_provider: metrics.MeterProvider | None = None,
               **options: Any) -> OpenTelemetryObserver:
    """Add an :class:`OpenTelemetryObserver` to ``meter`` and return it."""
    observer = OpenTelemetryObserver(tracer_provider=tracer_provider,
                                     meter_provider=meter_provider, **options)
    meter.add_observer(observer)
    return observer
