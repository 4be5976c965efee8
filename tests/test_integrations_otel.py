"""OpenTelemetry spans and metrics through the real SDK's in-memory exporters."""

from __future__ import annotations

from decimal import Decimal

import openai
import pytest
from integration_support import HELLO, openai_client, refused_record

import qwen_meter as qm

pytest.importorskip("opentelemetry.sdk")
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import SpanKind, StatusCode

from qwen_meter.integrations.otel import instrument


def points(reader, name):
    data = reader.get_metrics_data()
    found = []
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend(metric.data.data_points)
    return found


def test_span_per_call_nested_under_the_callers_span(make_meter, server, otel):
    tp, mp, exporter, _ = otel
    meter = make_meter(budget=qm.Budget("1 CNY"), limiter=qm.RateLimiter())
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    tracer = tp.get_tracer("app")
    with tracer.start_as_current_span("handle request") as parent, \
            qm.attribute(tags=["feature=search"], metadata={"run": "7"}):
        openai_client(meter, server).chat.completions.create(
            model="qwen-plus", messages=HELLO, max_tokens=100)
    (record,) = list(meter.log)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    span = spans["chat qwen-plus"]
    assert span.parent is not None and span.parent.span_id == parent.get_span_context().span_id
    assert span.context.trace_id == parent.get_span_context().trace_id
    assert span.kind is SpanKind.CLIENT and span.status.status_code is StatusCode.UNSET
    a = span.attributes
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == a["gen_ai.system"] == "dashscope"
    assert a["gen_ai.request.model"] == "qwen-plus" and a["gen_ai.response.model"] == "qwen-plus"
    assert a["gen_ai.request.max_tokens"] == 100
    assert a["gen_ai.response.id"] == record.request_id
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (22, 16)
    assert Decimal(a["qwen_meter.cost.exact"]) == Decimal("0.0000496")
    assert a["qwen_meter.cost"] == pytest.approx(0.0000496)
    assert a["qwen_meter.currency"] == "CNY" and a["qwen_meter.region"] == "cn"
    assert a["qwen_meter.prompt_diff"] == 0 and a["qwen_meter.estimate.exact"] is True
    assert a["qwen_meter.estimate.cost_high"] == record.estimated_cost_high
    assert a["qwen_meter.budgets"] == ("budget:global",)
    assert a["qwen_meter.limiter.limited"] is True
    assert a["qwen_meter.tags"] == ("feature=search",) and a["qwen_meter.metadata.run"] == "7"
    assert "qwen_meter.user" not in a
    # the span covers the call: from the start of counting to the record
    assert span.end_time - span.start_time == pytest.approx(record.latency_ms * 1e6, rel=1e-3)
    assert span.start_time >= parent.start_time and span.end_time <= parent.end_time


def test_stream_span_ends_when_the_stream_settles(make_meter, server, otel):
    tp, mp, exporter, _ = otel
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    stream = openai_client(meter, server).chat.completions.create(
        model="qwen-plus", messages=HELLO, stream=True)
    next(iter(stream))
    assert exporter.get_finished_spans() == ()
    for _ in stream:
        pass
    (span,) = exporter.get_finished_spans()
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.usage.output_tokens"] == 16


def test_failed_call_has_error_status_and_retry_events(make_meter, server, otel):
    tp, mp, exporter, reader = otel
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    server.push(*[{"status": 500, "code": "InternalError", "message": "oops"}] * 3)
    with pytest.raises(openai.InternalServerError):
        openai_client(meter, server).with_options(max_retries=0).chat.completions.create(
            model="qwen-plus", messages=HELLO)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    (record,) = list(meter.log)
    assert span.attributes["error.type"] == record.error_kind
    assert "gen_ai.usage.input_tokens" not in span.attributes
    retries = [e for e in span.events if e.name == "qwen_meter.retry"]
    assert len(retries) == record.attempts - 1 >= 1
    (duration,) = points(reader, "gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == record.error_kind
    assert points(reader, "gen_ai.client.token.usage") == []


def test_refused_call_gets_an_error_span(otel):
    tp, mp, exporter, _ = otel
    from qwen_meter.integrations.otel import OpenTelemetryObserver

    observer = OpenTelemetryObserver(tracer_provider=tp, meter_provider=mp)
    tracer = tp.get_tracer("app")
    with tracer.start_as_current_span("outer") as outer:
        observer.on_record(refused_record(), None)
    span = next(s for s in exporter.get_finished_spans() if s.name == "chat qwen-plus")
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes["error.type"] == "BudgetExceeded"
    assert span.attributes["qwen_meter.refused_by"] == "BudgetExceeded"
    assert span.parent.span_id == outer.get_span_context().span_id
    assert span.end_time - span.start_time == 2_500_000


def test_metrics_follow_the_genai_conventions(make_meter, server, otel):
    tp, mp, _, reader = otel
    meter = make_meter(budget=qm.Budget("1 CNY"))
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    for _ in range(2):
        openai_client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    tokens = {p.attributes["gen_ai.token.type"]: p for p in
              points(reader, "gen_ai.client.token.usage")}
    assert tokens["input"].sum == 44 and tokens["input"].count == 2
    assert tokens["output"].sum == 32
    assert tokens["input"].attributes["gen_ai.operation.name"] == "chat"
    assert tokens["input"].attributes["gen_ai.provider.name"] == "dashscope"
    assert 1024 in tokens["input"].explicit_bounds  # the conventions' advisory buckets
    (duration,) = points(reader, "gen_ai.client.operation.duration")
    assert duration.count == 2 and "error.type" not in duration.attributes
    (spent,) = points(reader, "qwen_meter.cost")
    assert spent.value == pytest.approx(2 * 0.0000496)
    assert spent.attributes["qwen_meter.currency"] == "CNY"
    (left,) = points(reader, "qwen_meter.budget.remaining")
    assert left.value == pytest.approx(float(Decimal(1) - 2 * Decimal("0.0000496")))


def test_embeddings_span(make_meter, server, otel):
    tp, mp, exporter, reader = otel
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    openai_client(meter, server).embeddings.create(model="text-embedding-v4",
                                                   input=["你好", "世界"])
    (span,) = exporter.get_finished_spans()
    assert span.name == "embeddings text-embedding-v4"
    assert span.attributes["gen_ai.operation.name"] == "embeddings"
    kinds = {p.attributes["gen_ai.token.type"] for p in
             points(reader, "gen_ai.client.token.usage")}
    assert kinds == {"input"}


def test_a_broken_exporter_never_breaks_the_call(make_meter, server, otel):
    tp, mp, _, _ = otel

    class Broken(SimpleSpanProcessor):
        def on_end(self, span):
            raise RuntimeError("collector down")

    tp.add_span_processor(Broken(InMemorySpanExporter()))
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    reply = openai_client(meter, server).chat.completions.create(model="qwen-plus",
                                                                 messages=HELLO)
    assert reply.choices[0].message.content and len(list(meter.log)) == 1


def test_sampled_out_calls_export_no_span_but_still_count(make_meter, server, otel):
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    _, mp, _, reader = otel
    exporter = InMemorySpanExporter()
    tp = TracerProvider(sampler=ALWAYS_OFF)
    tp.add_span_processor(SimpleSpanProcessor(exporter))
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    openai_client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    assert exporter.get_finished_spans() == ()
    (duration,) = points(reader, "gen_ai.client.operation.duration")
    assert duration.count == 1
