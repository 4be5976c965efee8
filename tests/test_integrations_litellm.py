"""LiteLLM: the exported price map, priced by LiteLLM itself, and the CustomLogger calling the
local DashScope stand-in through LiteLLM's dashscope provider."""

from __future__ import annotations

import json
import os
import time
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from integration_support import HELLO, KEY

import qwen_meter as qm
from qwen_meter.cli.main import main
from qwen_meter.integrations.litellm import LIMITATIONS, price_map

# LiteLLM fetches its price map from the network at import unless told to use its copy.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def test_tiers_keep_exact_bounds_and_cache_prices():
    prices = price_map(region="intl")
    entry = prices["dashscope/qwen3-max"]
    assert entry["litellm_provider"] == "dashscope" and entry["mode"] == "chat"
    spec = qm.resolve("qwen3-max")
    offer = spec.offer("intl")
    assert [t["range"] for t in entry["tiered_pricing"]] == [
        [t.above, t.upto] for t in offer.tiers]
    assert entry["tiered_pricing"][0]["range"][1] == 32768  # 32K = 32 x 1024
    first = offer.tiers[0]
    assert entry["input_cost_per_token"] == pytest.approx(float(first.input) / 1e6)
    # no printed cache price: the implicit-cache rate, not the full input price
    assert entry["cache_read_input_token_cost"] == pytest.approx(float(first.input) * 0.2 / 1e6)
    assert entry["max_input_tokens"] == offer.limits.max_input
    assert entry["max_output_tokens"] == offer.limits.max_output
    assert entry["metadata"]["currency"] == "USD"
    if offer.batch:
        assert entry["input_cost_per_token_batches"] == pytest.approx(
            float(first.input * offer.batch) / 1e6)
    else:  # no batch in this region (qwen3-max intl): nothing LiteLLM could misuse
        assert "input_cost_per_token_batches" not in entry


def test_cn_prices_only_converted_at_a_rate_the_user_gives():
    # LiteLLM reads every cost as USD: CNY figures written there would bill ~7x too high.
    with pytest.raises(qm.ConfigurationError, match="usd_per_cny"):
        price_map(region="cn")
    usd = price_map(region="cn", usd_per_cny="0.14")["dashscope/qwen-plus"]
    assert usd["metadata"]["currency"] == "USD" and usd["metadata"]["usd_per_cny"] == "0.14"
    assert usd["input_cost_per_token"] == pytest.approx(0.8 * 0.14 / 1e6)
    assert usd["output_cost_per_reasoning_token"] == pytest.approx(8 * 0.14 / 1e6)
    with pytest.raises(qm.ConfigurationError):
        price_map(region="cn", usd_per_cny="-1")
    with pytest.raises(qm.ConfigurationError):
        price_map(region="eu")
    with_aliases = price_map(region="cn", usd_per_cny="0.14", aliases=True)
    spec, alias = next((s, a) for s in qm.Catalogue.load() for a in s.aliases
                       if f"dashscope/{s.name}" in with_aliases and not a.endswith("-latest"))
    assert with_aliases[f"dashscope/{alias}"] == with_aliases[f"dashscope/{spec.name}"]
    assert f"dashscope/{alias}" not in price_map(region="cn", usd_per_cny="0.14")
    assert not any(k.endswith("-latest") for k in with_aliases)  # LiteLLM ignores those
    assert all(v["metadata"]["region"] == "cn" for v in with_aliases.values())


def test_intl_export_is_all_usd_list_prices():
    # The Singapore rows ML26 prints in CNY: USD list prices now, or left out (unpriced).
    prices = price_map(region="intl")
    assert all(v["metadata"]["currency"] == "USD" for v in prices.values())
    assert prices["dashscope/qwen-mt-plus"]["input_cost_per_token"] == pytest.approx(2.46 / 1e6)
    assert prices["dashscope/qwen-vl-max"]["output_cost_per_token"] == pytest.approx(3.2 / 1e6)
    for name in ("qwen3-4b", "qwen2.5-7b-instruct-1m", "qwen-omni-turbo", "qwen3-omni-flash"):
        assert f"dashscope/{name}" not in prices
    for spec in qm.Catalogue.load():
        for offers in spec.offers.values():
            for offer in offers:
                if offer.region != "cn":
                    assert offer.currency == "USD", (spec.name, offer.region)


def test_incomplete_prices_and_folded_snapshots_are_left_out(tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text(
        "models:\n  qwen-test-no-output:\n    family: qwen3\n    template: dashscope-qwen3\n"
        "    thinking: none\n    regions:\n      cn:\n        source: ML26\n"
        "        limits: {context: 32768, max_input: 30720, max_output: 8192}\n"
        "        price: {input: 1}\n", encoding="utf-8")
    catalogue = qm.Catalogue.load(overrides=[override])
    prices = price_map(catalogue, region="cn", usd_per_cny="0.14")
    # no output price: LiteLLM would bill its output as free
    assert qm.cost(qm.Usage(10, 10), "qwen-test-no-output", region="cn",
                   catalogue=catalogue).amount is None
    assert "dashscope/qwen-test-no-output" not in prices
    assert "dashscope/qwen-plus" in prices
    # LiteLLM files a dated snapshot under its base name: it would overwrite qwen-max
    assert "dashscope/qwen-max" in prices
    assert not any(k.startswith("dashscope/qwen-max-20") for k in prices)
    assert all(v["tiered_pricing"] for v in prices.values())


def test_cli_writes_the_map(tmp_path, capsys):
    out = tmp_path / "prices.json"
    assert main(["catalogue", "export", "litellm", "--region", "intl", "-o", str(out)]) == 0
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(price_map(region="intl")))
    err = capsys.readouterr().err
    assert all(line in err for line in LIMITATIONS)
    assert main(["catalogue", "export", "litellm", "-q"]) == 0
    assert json.loads(capsys.readouterr().out) == written
    assert main(["catalogue", "export", "litellm", "--region", "cn", "--usd-per-cny",
                 "abc"]) == 2
    assert main(["catalogue", "export", "litellm", "--region", "cn"]) == 2
    assert "--usd-per-cny" in capsys.readouterr().err


litellm = pytest.importorskip("litellm")


@pytest.fixture(scope="module")
def registered():
    prices = price_map(region="intl")
    litellm.register_model(prices)
    return prices


def litellm_cost(model, prompt, completion, cached=0, reasoning=0):
    from litellm.llms.dashscope.cost_calculator import cost_per_token

    usage = litellm.Usage(prompt_tokens=prompt, completion_tokens=completion,
                          total_tokens=prompt + completion,
                          prompt_tokens_details={"cached_tokens": cached},
                          completion_tokens_details={"reasoning_tokens": reasoning})
    return sum(cost_per_token(model, usage))


def test_a_32500_token_prompt_stays_in_the_first_tier(registered):
    first = qm.resolve("qwen3-max").offer("intl").tiers[0]
    assert first.upto == 32768
    assert litellm_cost("qwen3-max", 32_500, 0) == pytest.approx(
        float(32_500 * first.input / 10**6))


@given(data=st.data())
def test_litellm_prices_the_map_as_qwen_meter_does(registered, data):
    key = data.draw(st.sampled_from(sorted(k for k, v in registered.items()
                                           if v["mode"] == "chat")))
    model = key.split("/", 1)[1]
    spec = qm.resolve(model)
    limit = registered[key].get("max_input_tokens") or 1_000_000
    prompt = data.draw(st.integers(1, limit))
    completion = data.draw(st.integers(0, 20_000))
    cached = data.draw(st.integers(0, prompt))
    # outside thinking mode (whose answer tokens LiteLLM cannot price), except for
    # thinking-only models, which the map prices exactly
    reasoning = data.draw(st.integers(0, completion)) if spec.thinking == "only" else 0
    ours = qm.cost(qm.Usage(prompt, completion, cached_tokens=cached,
                            reasoning_tokens=reasoning), spec, region="intl")
    theirs = litellm_cost(model, prompt, completion, cached, reasoning)
    assert theirs == pytest.approx(float(ours.amount), rel=1e-9, abs=1e-12)


def _wait(logger, n):
    deadline = time.monotonic() + 10
    while len(logger.records) < n and time.monotonic() < deadline:
        time.sleep(0.02)
    return logger.records


@pytest.fixture(scope="module")
def module_logger(tmp_path_factory):
    # One logger for the module: LiteLLM copies litellm.callbacks into its own success and
    # failure lists on the first call, so a callback list replaced later is not seen.
    from qwen_meter.integrations.litellm import QwenMeterLogger

    seen = []

    class Seen(qm.Observer):
        def on_record(self, record, call):
            seen.append((record, call))

    made = QwenMeterLogger(log=tmp_path_factory.mktemp("litellm") / "usage.jsonl",
                           observers=[Seen()])
    made.seen = seen
    saved = litellm.callbacks
    litellm.callbacks = [made]
    yield made
    litellm.callbacks = saved
    made.close()


@pytest.fixture
def logger(module_logger):
    time.sleep(0.05)  # let a previous test's background success handler finish
    module_logger.records = []
    module_logger.seen.clear()
    return module_logger


def test_logger_records_litellm_calls_with_qwen_meter_prices(logger, server):
    litellm.completion(model="dashscope/qwen-plus", api_base=server.compatible, api_key=KEY,
                       messages=HELLO, metadata={"run": "42", "tags": ["feature=chat"]},
                       user="bob")
    (record,) = _wait(logger, 1)
    body = server.requests[-1]["body"]
    prompt = qm.count_messages(body["messages"], "qwen-plus").tokens
    assert (record.model, record.status, record.prompt_tokens) == ("qwen-plus", "ok", prompt)
    assert record.completion_tokens == 16 and record.region == "cn"
    expected = qm.cost(qm.Usage(prompt, 16), "qwen-plus", region="cn")
    assert Decimal(record.cost) == expected.amount and record.currency == "CNY"
    assert record.tags == ("feature=chat",) and record.metadata["run"] == "42"
    assert record.user == "bob" and record.request_id.startswith("chatcmpl-")
    assert "litellm_cost" in record.metadata
    assert qm.read_usage(logger.log.path)[-1] == record
    assert logger.seen == [(record, None)]


def test_logger_records_streams_and_failures(logger, server):
    stream = litellm.completion(model="dashscope/qwen-plus", api_base=server.compatible,
                                api_key=KEY, messages=HELLO, stream=True,
                                stream_options={"include_usage": True})
    for _ in stream:
        pass
    (streamed,) = _wait(logger, 1)
    assert streamed.stream and streamed.completion_tokens == 16 and streamed.cost
    server.push({"status": 400, "code": "InvalidParameter", "message": "bad input"})
    with pytest.raises(litellm.BadRequestError):
        litellm.completion(model="dashscope/qwen-plus", api_base=server.compatible,
                           api_key=KEY, messages=HELLO, num_retries=0)
    failed = _wait(logger, 2)[-1]
    assert failed.status == "error" and failed.http_status == 400 and failed.cost is None


def test_logger_records_async_calls(logger, server):
    import asyncio

    async def go():
        await litellm.acompletion(model="dashscope/qwen-plus", api_base=server.compatible,
                                  api_key=KEY, messages=HELLO, metadata={"run": "async"})
        try:
            for _ in range(500):  # LiteLLM logs async calls in a task of this loop
                if logger.records:
                    return
                await asyncio.sleep(0.01)
        finally:  # LiteLLM caches an aiohttp session per loop; this loop ends here
            await litellm.close_litellm_async_clients()

    asyncio.run(go())
    (record,) = _wait(logger, 1)
    assert record.status == "ok" and record.metadata["run"] == "async" and record.cost


def test_logger_records_embeddings(logger, server):
    litellm.embedding(model="dashscope/text-embedding-v4", api_base=server.compatible,
                      api_key=KEY, input=["你好", "世界"])
    (record,) = _wait(logger, 1)
    tokens = sum(qm.count_tokens(t, "text-embedding-v4").tokens + 1 for t in ("你好", "世界"))
    assert (record.endpoint, record.prompt_tokens, record.completion_tokens) == (
        "embeddings", tokens, 0)
    assert Decimal(record.cost) == qm.cost(qm.Usage(tokens), "text-embedding-v4").amount


def test_logger_ignores_other_providers(logger):
    logger.log_success_event({"model": "gpt-4o", "custom_llm_provider": "openai",
                              "litellm_params": {"api_base": "https://api.openai.com/v1"}},
                             None, 0.0, 1.0)
    assert logger.records == []


def test_intl_host_prices_in_usd(logger):
    usage = litellm.Usage(prompt_tokens=40_000, completion_tokens=10, total_tokens=40_010)
    response = litellm.ModelResponse(model="qwen3-max", usage=usage)
    logger.log_success_event({"model": "qwen3-max", "custom_llm_provider": "dashscope",
                              "litellm_params": {
                                  "api_base": "https://dashscope-intl.aliyuncs.com/"
                                              "compatible-mode/v1"}},
                             response, 0.0, 1.5)
    (record,) = logger.records
    assert record.region == "intl" and record.currency == "USD"
    assert Decimal(record.cost) == qm.cost(qm.Usage(40_000, 10), "qwen3-max",
                                           region="intl").amount
    assert record.latency_ms == 1500


def test_logger_shares_a_meters_log_and_observers(tmp_path):
    from qwen_meter.integrations.litellm import QwenMeterLogger

    seen = []

    class Seen(qm.Observer):
        def on_record(self, record, call):
            seen.append(record)

    meter = qm.Meter(log=tmp_path / "meter.jsonl", region="intl", observers=[Seen()])
    shared = QwenMeterLogger(meter=meter)
    usage = litellm.Usage(prompt_tokens=100, completion_tokens=10, total_tokens=110,
                          completion_tokens_details={"reasoning_tokens": 4})
    shared.log_success_event({"model": "dashscope/qwen-flash", "custom_llm_provider": "dashscope",
                              "litellm_params": {"api_base": "http://127.0.0.1:1/v1"}},
                             litellm.ModelResponse(model="qwen-flash", usage=usage), 0.0, 0.2)
    shared.close()  # the meter's log stays open
    (record,) = list(meter.log)
    assert seen == [record] and record.region == "intl" and record.reasoning_tokens == 4
    # reasoning tokens: priced in thinking mode, as qwen_meter prices a thinking call
    assert Decimal(record.cost) == qm.cost(qm.Usage(100, 10, reasoning_tokens=4), "qwen-flash",
                                           region="intl").amount
    meter.close()


def test_a_key_echoed_in_an_error_is_masked_in_the_log_and_the_span(logger, server, caplog):
    # issue 26: the server's error text quotes the key (not sk-shaped, so only the key's
    # value can find it); the record, the logging observer's message and the span's status
    # description must all hold the mask instead.
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from qwen_meter.integrations.otel import OpenTelemetryObserver
    from qwen_meter.integrations.usage_logging import UsageLoggingObserver

    key = "dskey-Zq81Lm0PpX4vR7tY2uW9"
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    extra = [OpenTelemetryObserver(tracer_provider=provider, with_metrics=False),
             UsageLoggingObserver()]
    logger.observers.extend(extra)
    try:
        server.push({"status": 401, "code": "InvalidApiKey",
                     "message": f"Invalid API-key provided: {key}"})
        with caplog.at_level("WARNING", logger="qwen_meter.usage"), \
                pytest.raises(litellm.AuthenticationError):
            litellm.completion(model="dashscope/qwen-plus", api_base=server.compatible,
                               api_key=key, messages=HELLO, num_retries=0)
        failed = _wait(logger, 1)[-1]
    finally:
        for observer in extra:
            logger.observers.remove(observer)
    assert failed.status == "error" and "Invalid API-key provided" in failed.error
    assert key not in failed.error and "***" in failed.error
    messages = [r.getMessage() for r in caplog.records if r.name == "qwen_meter.usage"]
    assert messages and all(key not in m for m in messages)
    assert any("Invalid API-key provided" in m for m in messages)
    (span,) = exporter.get_finished_spans()
    assert "Invalid API-key provided" in span.status.description
    assert key not in span.status.description
    assert key not in (logger.log.path.read_text(encoding="utf-8"))
