"""OpenTelemetry beside other GenAI instrumentation (issue 26): the real openai-v2
instrumentation counts each call once with qwen_meter's figures on its span; request
parameters, server, finish reasons and gen_ai.usage.cost on spans; two meters on one
meter provider keep their gauges."""

from __future__ import annotations

import asyncio

import openai
import pytest
from integration_support import HELLO, KEY, openai_client

import qwen_meter as qm

pytest.importorskip("opentelemetry.sdk")

from qwen_meter.integrations.otel import instrument


@pytest.fixture
def openai_v2(otel):
    """The real openai-v2 instrumentation on the test's providers."""
    v2 = pytest.importorskip("opentelemetry.instrumentation.openai_v2")
    tp, mp, _, _ = otel
    instrumentor = v2.OpenAIInstrumentor()
    instrumentor.instrument(tracer_provider=tp, meter_provider=mp)
    yield instrumentor
    instrumentor.uninstrument()


def points(reader, name):
    found = []
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found.extend((scope.scope.name, p) for p in metric.data.data_points)
    return found


def chat_spans(exporter):
    return [s for s in exporter.get_finished_spans() if s.name.startswith("chat ")]


def test_with_openai_v2_each_call_is_one_span_and_one_token_series(make_meter, server, otel,
                                                                    openai_v2):
    tp, mp, exporter, reader = otel
    meter = make_meter(budget=qm.Budget("1 CNY"))
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    client = openai_client(meter, server)
    client.chat.completions.create(model="qwen-plus", messages=HELLO, temperature=0.3)
    for _ in client.chat.completions.create(model="qwen-plus", messages=HELLO, stream=True,
                                            stream_options={"include_usage": True}):
        pass

    async def go():
        aclient = meter.wrap(openai.AsyncOpenAI(api_key=KEY, base_url=server.compatible))
        await aclient.chat.completions.create(model="qwen-plus", messages=HELLO)

    asyncio.run(go())
    records = list(meter.log)
    spans = chat_spans(exporter)
    assert len(records) == 3 and len(spans) == 3  # one span per call, not two
    by_id = {s.attributes["gen_ai.response.id"]: s for s in spans}
    for record in records:
        a = by_id[record.request_id].attributes  # the instrumentation's span, enriched
        assert a["qwen_meter.record_id"] == record.id
        assert a["qwen_meter.cost"] == a["gen_ai.usage.cost"] == float(record.cost)
        assert a["qwen_meter.currency"] == "CNY" and a["qwen_meter.provider"] == "dashscope"
        assert a["qwen_meter.budgets"] == ("budget:global",)
    assert by_id[records[0].request_id].attributes["gen_ai.request.temperature"] == 0.3
    scopes = {scope for scope, _ in points(reader, "gen_ai.client.token.usage")}
    assert len(scopes) == 1 and "qwen_meter" not in scopes  # one token-usage series source
    inputs = [p for _, p in points(reader, "gen_ai.client.token.usage")
              if p.attributes["gen_ai.token.type"] == "input"]
    assert sum(p.count for p in inputs) == 3
    assert sum(p.count for _, p in points(reader, "gen_ai.client.operation.duration")) == 3
    (spent,) = [p for _, p in points(reader, "qwen_meter.cost")]  # the cost still counts
    assert spent.value == pytest.approx(sum(float(r.cost) for r in records))


def test_other_instrumentation_false_keeps_our_own_span(make_meter, server, otel, openai_v2):
    tp, mp, exporter, _ = otel
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp, other_instrumentation=False)
    openai_client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    scopes = sorted(s.instrumentation_scope.name for s in chat_spans(exporter))
    assert len(scopes) == 2 and "qwen_meter" in scopes
    ours = next(s for s in chat_spans(exporter) if s.instrumentation_scope.name == "qwen_meter")
    theirs = next(s for s in chat_spans(exporter) if s is not ours)
    assert ours.parent.span_id == theirs.context.span_id


def test_other_instrumentation_true_skips_our_span_and_token_points(make_meter, server, otel):
    tp, mp, exporter, reader = otel
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp, other_instrumentation=True)
    openai_client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    assert chat_spans(exporter) == []
    assert points(reader, "gen_ai.client.token.usage") == []
    assert len(points(reader, "qwen_meter.cost")) == 1


def test_span_carries_request_parameters_server_and_finish_reasons(make_meter, server, otel):
    tp, mp, exporter, _ = otel
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    client = openai_client(meter, server)
    client.chat.completions.create(model="qwen-plus", messages=HELLO, temperature=0.7,
                                   top_p=0.9, max_tokens=64)
    for _ in client.chat.completions.create(model="qwen-plus", messages=HELLO, stream=True):
        pass
    plain, streamed = sorted(chat_spans(exporter), key=lambda s: s.start_time)
    a = plain.attributes
    assert (a["gen_ai.request.temperature"], a["gen_ai.request.top_p"],
            a["gen_ai.request.max_tokens"]) == (0.7, 0.9, 64)
    host, port = server.compatible.split("//")[1].split("/")[0].split(":")
    assert (a["server.address"], a["server.port"]) == (host, int(port))
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert streamed.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert "gen_ai.request.temperature" not in streamed.attributes
    record = next(iter(meter.log))
    assert a["gen_ai.usage.cost"] == a["qwen_meter.cost"] == float(record.cost)


def test_native_sdk_span_has_finish_reason_and_parameters(make_meter, server, otel):
    dashscope = pytest.importorskip("dashscope")
    tp, mp, exporter, _ = otel
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    generation = meter.wrap(dashscope.Generation)
    generation.call(model="qwen-plus", messages=HELLO, api_key=KEY, result_format="message",
                    temperature=0.2, base_address=server.native)
    (span,) = chat_spans(exporter)
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert span.attributes["gen_ai.request.temperature"] == 0.2


def test_two_meters_on_one_provider_both_report_their_gauges(make_meter, server, otel,
                                                              tmp_path):
    tp, mp, _, reader = otel
    first = make_meter(budget=qm.Budget("1 CNY", name="team-a"), limiter=qm.RateLimiter(),
                       log=tmp_path / "a.jsonl")
    second = make_meter(budget=qm.Budget("2 CNY", name="team-b"),
                        limiter=qm.RateLimiter(account="b"), log=tmp_path / "b.jsonl")
    for meter in (first, second):
        instrument(meter, tracer_provider=tp, meter_provider=mp)
        openai_client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    budgets = {p.attributes["qwen_meter.budget"]
               for _, p in points(reader, "qwen_meter.budget.remaining")}
    assert budgets == {"team-a", "team-b"}
    accounts = {p.attributes["qwen_meter.limiter.account"]
                for _, p in points(reader, "qwen_meter.limiter.utilization")}
    assert len(accounts) == 2
    (spent,) = [p for _, p in points(reader, "qwen_meter.cost")]
    assert spent.value == pytest.approx(sum(float(r.cost) for m in (first, second)
                                            for r in m.log))


def test_an_application_span_with_genai_attributes_is_not_taken_for_a_call(make_meter, server,
                                                                            otel):
    # an agent / workflow span (kind INTERNAL) around the call keeps its own child span
    tp, mp, exporter, _ = otel
    meter = make_meter()
    instrument(meter, tracer_provider=tp, meter_provider=mp)
    with tp.get_tracer("agent").start_as_current_span(
            "invoke_agent", attributes={"gen_ai.operation.name": "invoke_agent"}):
        openai_client(meter, server).chat.completions.create(model="qwen-plus",
                                                             messages=HELLO)
    (span,) = chat_spans(exporter)
    assert span.instrumentation_scope.name == "qwen_meter"
