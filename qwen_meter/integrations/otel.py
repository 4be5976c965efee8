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

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from ..base.errors import MissingExtra

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.metrics import CallbackOptions, Observation
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise MissingExtra("the OpenTelemetry integration needs opentelemetry-api: "
                       'pip install ".[otel]" (from a clone)') from exc

from ..meter.observers import Observer
from . import _common as c

if TYPE_CHECKING:
    from ..meter.call import MeteredCall
    from ..meter.log import UsageRecord
    from ..meter.pipeline import Meter

#: Bucket boundaries the GenAI conventions advise for ``gen_ai.client.token.usage``.
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304,
                 16777216, 67108864)
#: ... and for ``gen_ai.client.operation.duration`` (seconds).
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48,
                    40.96, 81.92)
_SCOPE = "qwen_meter"


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
    (off by default: it is personal data in many pipelines).
    """

    def __init__(self, *, tracer_provider: trace.TracerProvider | None = None,
                 meter_provider: metrics.MeterProvider | None = None, with_spans: bool = True,
                 with_metrics: bool = True, record_user: bool = False) -> None:
        version = _version()
        self.record_user = record_user
        self._tracer = trace.get_tracer(_SCOPE, version, tracer_provider=tracer_provider) \
            if with_spans else None
        self._watched = c.Watched()
        self._spans = c.CallSlot("otel")  # the open span and its start, per call
        self._metrics = with_metrics
        if not with_metrics:
            return
        meter = (meter_provider or metrics.get_meter_provider()).get_meter(_SCOPE, version)
        self._tokens = meter.create_histogram(
            "gen_ai.client.token.usage", unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=list(TOKEN_BUCKETS))
        self._duration = meter.create_histogram(
            "gen_ai.client.operation.duration", unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=list(DURATION_BUCKETS))
        self._cost = meter.create_counter(
            "qwen_meter.cost", unit="{currency}",
            description="Cost of the calls as qwen_meter prices them, in qwen_meter.currency")
        meter.create_observable_gauge(
            "qwen_meter.budget.remaining", [self._budget_gauge], unit="{currency}",
            description="Budget left in the current period, per budget and scope")
        meter.create_observable_gauge(
            "qwen_meter.limiter.utilization", [self._limiter_gauge], unit="1",
            description="Share of the rate limit used in the current minute (rpm / tpm)")

    # --- observer events --------------------------------------------------------------------

    def on_begin(self, call: MeteredCall) -> None:
        self._watched.see(call)
        if self._tracer is None:
            return
        start = c.start_time_ns(call.started)
        span = self._tracer.start_span(
            f"{c.operation(call.endpoint)} {call.model}", context=otel_context.get_current(),
            kind=SpanKind.CLIENT, start_time=start,
            attributes=self._request_attributes(call.model, call.endpoint, call.stream))
        if span.is_recording():  # sampled out or no SDK: build nothing more
            span.set_attributes(self._begin_attributes(call))
        self._spans.put(call, (span, start))

    def on_retry(self, call: MeteredCall, error: BaseException, delay: float) -> None:
        opened = self._spans.get(call)
        if opened is not None:
            opened[0].add_event("qwen_meter.retry", {
                "error.type": str(getattr(error, "kind", type(error).__name__)),
                "qwen_meter.attempt": call.attempts, "qwen_meter.retry_delay_s": delay})

    def on_record(self, record: UsageRecord, call: MeteredCall | None) -> None:
        if self._metrics:
            self._measure(record)
        if self._tracer is None:
            return
        opened = self._spans.pop(call) if call is not None else None
        if opened is None:  # refused before it began (or observed from mid-call on)
            end = c.end_time_ns(record)
            start = end - int((record.latency_ms or 0.0) * 1_000_000)
            span = self._tracer.start_span(
                f"{c.operation(record.endpoint)} {record.model}",
                context=otel_context.get_current(), kind=SpanKind.CLIENT, start_time=start,
                attributes=self._request_attributes(record.model, record.endpoint,
                                                    record.stream))
        else:
            span, start = opened
        if span.is_recording():
            span.set_attributes(self._record_attributes(record))
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

    def _begin_attributes(self, call: MeteredCall) -> dict[str, Any]:
        attributes: dict[str, Any] = {}
        max_tokens = c.any_attr(call, "max_tokens")
        if max_tokens is not None:
            attributes["gen_ai.request.max_tokens"] = max_tokens
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
        return attributes

    def _record_attributes(self, r: UsageRecord) -> dict[str, Any]:
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
            a["qwen_meter.cost"] = float(amount)
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
        return a

    # --- metrics ----------------------------------------------------------------------------

    def _measure(self, r: UsageRecord) -> None:
        attributes: dict[str, Any] = {"gen_ai.operation.name": c.operation(r.endpoint),
                                      "gen_ai.provider.name": c.PROVIDER,
                                      "gen_ai.request.model": r.model}
        if r.served_model:
            attributes["gen_ai.response.model"] = r.served_model
        kind = c.error_type(r)
        if kind is not None:
            attributes["error.type"] = kind
        self._duration.record(c.duration_s(r), attributes)
        if kind is None:
            self._tokens.record(r.prompt_tokens, {**attributes, "gen_ai.token.type": "input"})
            if r.endpoint != "embeddings":
                self._tokens.record(r.completion_tokens,
                                    {**attributes, "gen_ai.token.type": "output"})
        amount = c.cost_amount(r)
        if amount is not None and r.currency:
            self._cost.add(float(amount), {**attributes, "qwen_meter.currency": r.currency})

    def _budget_gauge(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(float(remaining), {"qwen_meter.budget": budget.name,
                                               "qwen_meter.budget.scope": budget.scope,
                                               "qwen_meter.budget.scope_value": scope,
                                               "qwen_meter.currency": budget.currency})
                for budget, scope, _, remaining in self._watched.budgets()]

    def _limiter_gauge(self, options: CallbackOptions) -> Iterable[Observation]:
        return [Observation(used, {"gen_ai.request.model": model,
                                   "qwen_meter.limiter.account": limiter.account,
                                   "qwen_meter.limiter.window": window})
                for limiter, model, window, used in self._watched.limiters()]


def instrument(meter: Meter, *, tracer_provider: trace.TracerProvider | None = None,
               meter_provider: metrics.MeterProvider | None = None,
               **options: Any) -> OpenTelemetryObserver:
    """Add an :class:`OpenTelemetryObserver` to ``meter`` and return it."""
    observer = OpenTelemetryObserver(tracer_provider=tracer_provider,
                                     meter_provider=meter_provider, **options)
    meter.add_observer(observer)
    return observer
