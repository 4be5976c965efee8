"""End to end: the real openai, dashscope and langchain-openai clients, metered, against a local
server that answers like DashScope."""

from __future__ import annotations

import asyncio
import json
import threading
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from meter_fixtures import close_aio_sessions

import qwen_meter as qm
from qwen_meter.meter.log import SCHEMA_VERSION

openai = pytest.importorskip("openai")

HELLO = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "你是誰?"}]
KEY = "sk-secret0123456789abcdef"


# `server` and `make_meter` come from tests/meter_fixtures.py (a plugin, see conftest).


def records(meter):
    return list(meter.log)


def client(meter, server, cls=None):
    cls = cls or openai.OpenAI
    return meter.wrap(cls(api_key=KEY, base_url=server.compatible))


# --- openai, sync -------------------------------------------------------------------------

def test_chat_record_matches_the_published_call(make_meter, server):
    meter = make_meter(budget=qm.Budget("1 CNY"), limiter=qm.RateLimiter())
    reply = client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO,
                                                          max_tokens=100)
    assert reply.usage.prompt_tokens == 22 and reply.choices[0].message.content
    (record,) = records(meter)
    assert (record.status, record.prompt_tokens, record.completion_tokens) == ("ok", 22, 16)
    assert record.estimated_prompt_tokens == 22 and record.prompt_diff == 0
    assert Decimal(record.cost) == Decimal("0.0000496") and record.currency == "CNY"
    assert Decimal(record.estimated_cost_high) == (22 * Decimal("0.8") + 100 * 2) / 10**6
    assert record.request_id.startswith("chatcmpl-") and record.served_model == "qwen-plus"
    assert meter.budgets[0].status().committed == Decimal("0.0000496")
    assert meter.budgets[0].status().reserved == 0
    assert meter.limiter.usage("qwen-plus") == (1, 38)


def test_stream_looks_exactly_as_unmetered(make_meter, server):
    meter = make_meter()
    bare = openai.OpenAI(api_key=KEY, base_url=server.compatible)
    plain = [c.model_dump(exclude={"id", "created"}) for c in bare.chat.completions.create(
        model="qwen-plus", messages=HELLO, stream=True)]
    metered = [c.model_dump(exclude={"id", "created"}) for c in client(meter, server).chat
               .completions.create(model="qwen-plus", messages=HELLO, stream=True)]
    assert metered == plain and all(c["usage"] is None for c in metered)
    assert server.requests[-1]["body"]["stream_options"] == {"include_usage": True}
    (record,) = records(meter)
    assert record.stream and not record.usage_estimated
    assert (record.prompt_tokens, record.completion_tokens) == (22, 16)


def test_stream_that_asked_for_usage_keeps_it(make_meter, server):
    meter = make_meter()
    chunks = list(client(meter, server).chat.completions.create(
        model="qwen-plus", messages=HELLO, stream=True, stream_options={"include_usage": True}))
    assert chunks[-1].usage.total_tokens == 38 and chunks[-1].choices == []
    assert records(meter)[0].total_tokens == 38


def test_stream_closed_early_is_settled_from_what_arrived(make_meter, server):
    meter = make_meter(budget=qm.Budget("1 CNY"))
    server.push({"slow": 0.01})
    stream = client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO,
                                                           stream=True)
    for n, _ in enumerate(stream):
        if n == 2:
            break
    stream.close()
    (record,) = records(meter)
    assert record.status == "closed" and record.usage_estimated
    assert record.prompt_tokens == 22 and 0 < record.completion_tokens < 16
    assert record.cost is not None and Decimal(record.cost) > 0
    assert meter.budgets[0].status().reserved == 0


def test_dropped_stream_is_estimated_never_free(make_meter, server):
    meter = make_meter()
    server.push({"drop_after": 2})
    text = "".join(c.choices[0].delta.content or "" for c in client(meter, server).chat
                   .completions.create(model="qwen-plus", messages=HELLO, stream=True)
                   if c.choices)
    (record,) = records(meter)
    assert record.status == "incomplete" and record.usage_estimated
    assert record.completion_tokens == qm.count_completion(text, "qwen-plus").tokens > 0
    assert Decimal(record.cost) > 0


def test_response_without_usage_is_estimated(make_meter, server):
    meter = make_meter()
    server.push({"no_usage": True})
    client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    (record,) = records(meter)
    assert record.usage_estimated and record.prompt_tokens == 22
    assert record.completion_tokens == 16 and record.cost is not None


def test_embeddings(make_meter, server):
    meter = make_meter()
    result = client(meter, server).embeddings.create(model="text-embedding-v4",
                                                     input=["你好", "天气"])
    assert result.usage.prompt_tokens == 4
    (record,) = records(meter)
    assert record.endpoint == "embeddings" and record.estimated_prompt_tokens == 4
    assert Decimal(record.cost) == 4 * Decimal("0.5") / 10**6


def test_everything_else_passes_through(make_meter, server):
    meter = make_meter()
    wrapped = client(meter, server)
    assert wrapped.base_url == openai.OpenAI(api_key=KEY, base_url=server.compatible).base_url
    raw = wrapped.chat.completions.with_raw_response.create(model="qwen-plus", messages=HELLO)
    assert raw.status_code == 200 and raw.parse().usage.total_tokens == 38
    assert len(records(meter)) == 1


# --- errors and retries -------------------------------------------------------------------

def test_rate_limit_is_retried_honouring_retry_after(make_meter, server):
    slept = []
    meter = make_meter(retry=qm.RetryPolicy(sleep=slept.append), limiter=qm.RateLimiter())
    server.push({"status": 429, "retry_after": 0.25},
                {"status": 503, "code": "ServiceUnavailable",
                 "message": "The engine is currently overloaded"})
    reply = client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    assert reply.usage.total_tokens == 38
    assert slept[0] == 0.25 and len(slept) == 2
    (record,) = records(meter)
    assert record.attempts == 3 and record.status == "ok"
    requests, tokens = meter.limiter.usage("qwen-plus")
    assert requests == 3 and tokens == 38  # failed attempts keep their request, not tokens


@pytest.mark.parametrize(("behaviour", "error", "kind"), [
    ({"status": 429, "code": "Arrearage", "message": "Access denied, please make sure your "
      "account is in good standing."}, "RateLimitError", "quota"),
    ({"status": 400, "code": "Arrearage", "message": "Access denied, please make sure your "
      "account is in good standing."}, "BadRequestError", "quota"),
    ({"status": 403, "code": "AllocationQuota.FreeTierOnly", "message": "The free tier of the "
      "model has been exhausted."}, "PermissionDeniedError", "quota"),
    ({"status": 401, "code": "invalid_api_key", "message": f"Incorrect API key provided: {KEY}"},
     "AuthenticationError", "auth"),
    ({"status": 400, "code": "InvalidParameter", "message": "bad"}, "BadRequestError",
     "bad_request"),
])
def test_errors_that_cannot_succeed_are_not_retried(make_meter, server, tmp_path, behaviour,
                                                    error, kind):
    meter = make_meter(budget=qm.Budget("1 CNY"), limiter=qm.RateLimiter())
    before = len(server.requests)
    server.push(behaviour)
    with pytest.raises(getattr(openai, error)):
        client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    assert len(server.requests) == before + 1
    (record,) = records(meter)
    assert record.status == "error" and record.error_kind == kind
    assert meter.budgets[0].status().reserved == 0 == meter.budgets[0].status().committed
    assert meter.limiter.usage("qwen-plus") == (0, 0)
    assert KEY not in (tmp_path / "usage.jsonl").read_text()
    assert KEY[:6] not in record.error or "***" in record.error


def test_retries_give_up_and_release(make_meter, server):
    meter = make_meter(budget=qm.Budget("1 CNY"))
    server.push(*[{"status": 500, "code": "InternalError", "message": "oops"}] * 3)
    with pytest.raises(openai.InternalServerError):
        client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    (record,) = records(meter)
    assert record.attempts == 3 and record.error_kind == "server"
    assert meter.budgets[0].status().reserved == 0


def test_classification():
    assert isinstance(qm.classify(429, {"error": {"code": "Throttling.AllocationQuota",
                                                  "message": "Allocated quota exceeded"}}),
                      qm.ServerRateLimited)
    burst = qm.classify(429, {"code": "Throttling.BurstRate",
                              "message": "Request rate increased too quickly"})
    assert burst.retryable and burst.limit == "burst"
    assert qm.classify(429, "Requests rate limit exceeded").limit == "requests"
    assert not qm.classify(429, {"code": "Arrearage"}).retryable
    assert isinstance(qm.classify(503, None), qm.ServerUnavailable)
    assert qm.classify(429, None, {"Retry-After": "3"}).retry_after == 3


# --- before sending -------------------------------------------------------------------------

def test_bad_requests_fail_before_anything_is_sent(make_meter, server):
    meter = make_meter(budget=qm.Budget("0.00001 CNY"))
    wrapped = client(meter, server)
    before = len(server.requests)
    with pytest.raises(qm.UnpricedCall, match="catalogue override"):  # unknown, hard budget
        wrapped.chat.completions.create(model="qwen-plsu", messages=HELLO)
    with pytest.raises(qm.InvalidMessages):
        wrapped.chat.completions.create(model="qwen-plus", messages=[{"role": "robot",
                                                                      "content": "x"}])
    with pytest.raises(qm.OutputLimitExceeded):
        wrapped.chat.completions.create(model="qwen-plus", messages=HELLO, max_tokens=10**6)
    with pytest.raises(qm.BudgetExceeded):
        wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
    assert len(server.requests) == before
    assert [(r.status, r.error_kind) for r in records(meter)] == [
        ("refused", "UnpricedCall"), ("refused", "InvalidMessages"),
        ("refused", "OutputLimitExceeded"), ("refused", "BudgetExceeded")]
    with pytest.raises(qm.UnsupportedClient):
        meter.wrap(object())


def test_rate_limited_before_sending(make_meter, server):
    meter = make_meter(limiter=qm.RateLimiter(limits={"qwen-plus": (1, None)}), wait=False)
    wrapped = client(meter, server)
    wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
    with pytest.raises(qm.RateLimited):
        wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)


# --- calibration --------------------------------------------------------------------------

def test_systematic_gap_is_learned(make_meter, server):
    server.prompt_offset = 4  # the server's template adds an empty think block
    meter = make_meter()
    wrapped = client(meter, server)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for _ in range(6):
            wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
    assert sum("+4 prompt tokens" in str(w.message) for w in caught) == 1
    first, *_, last = records(meter)
    assert (first.prompt_diff, first.calibration) == (4, 0)
    assert (last.calibration, last.estimated_prompt_tokens, last.prompt_diff) == (4, 26, 4)


# --- openai, async --------------------------------------------------------------------------

def test_async_openai_plain_and_stream(make_meter, server):
    meter = make_meter(budget=qm.Budget("1 CNY"))
    wrapped = client(meter, server, openai.AsyncOpenAI)

    async def main():
        reply = await wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
        stream = await wrapped.chat.completions.create(model="qwen-plus", messages=HELLO,
                                                       stream=True)
        chunks = [c async for c in stream]
        return reply, chunks

    reply, chunks = asyncio.run(main())
    assert reply.usage.total_tokens == 38 and all(c.usage is None for c in chunks)
    assert [r.total_tokens for r in records(meter)] == [38, 38]
    assert meter.budgets[0].status().reserved == 0


# --- dashscope native SDK -------------------------------------------------------------------

@pytest.fixture
def dashscope_sdk(server):
    dashscope = pytest.importorskip("dashscope")
    previous = dashscope.base_http_api_url
    dashscope.base_http_api_url = server.native
    yield dashscope
    dashscope.base_http_api_url = previous


@pytest.mark.parametrize("result_format", ["message", "text"])
def test_dashscope_call(make_meter, dashscope_sdk, result_format):
    meter = make_meter()
    generation = meter.wrap(dashscope_sdk.Generation)
    response = generation.call(model="qwen-plus", messages=HELLO, api_key=KEY,
                               result_format=result_format)
    assert response.status_code == 200 and response.usage.input_tokens == 22
    (record,) = records(meter)
    assert (record.prompt_tokens, record.completion_tokens) == (22, 16)
    assert record.request_id == response.request_id


@pytest.mark.parametrize("incremental", [True, False])
def test_dashscope_stream(make_meter, dashscope_sdk, incremental):
    meter = make_meter()
    generation = meter.wrap(dashscope_sdk.Generation)
    chunks = list(generation.call(model="qwen-plus", messages=HELLO, api_key=KEY, stream=True,
                                  incremental_output=incremental, result_format="message"))
    assert len(chunks) == 4
    (record,) = records(meter)
    assert record.stream and not record.usage_estimated
    assert (record.prompt_tokens, record.completion_tokens) == (22, 16)


def test_dashscope_stream_stopped_early(make_meter, dashscope_sdk, server):
    meter = make_meter()
    generation = meter.wrap(dashscope_sdk.Generation)
    stream = generation.call(model="qwen-plus", messages=HELLO, api_key=KEY, stream=True,
                             incremental_output=True, result_format="message")
    next(stream)
    stream.close()
    (record,) = records(meter)
    # stopped before the final finish_reason: closed, with the cumulative usage reached
    assert record.status == "closed" and record.completion_tokens == 1
    assert not record.usage_estimated


def test_dashscope_errors_retry_and_return_the_sdk_response(make_meter, dashscope_sdk, server):
    meter = make_meter()
    generation = meter.wrap(dashscope_sdk.Generation)
    server.push({"status": 429, "code": "Throttling.RateQuota"})
    ok = generation.call(model="qwen-plus", messages=HELLO, api_key=KEY)
    assert ok.status_code == 200
    server.push({"status": 401, "code": "InvalidApiKey", "message": "Invalid API-key provided."})
    refused = generation.call(model="qwen-plus", messages=HELLO, api_key=KEY)
    assert refused.status_code == 401 and refused.code == "InvalidApiKey"
    first, second = records(meter)
    assert first.attempts == 2 and second.error_kind == "auth"


def test_dashscope_async(make_meter, dashscope_sdk):
    meter = make_meter()
    generation = meter.wrap(dashscope_sdk.AioGeneration)

    async def main():
        plain = await generation.call(model="qwen-plus", messages=HELLO, api_key=KEY)
        stream = await generation.call(model="qwen-plus", messages=HELLO, api_key=KEY,
                                       stream=True, incremental_output=True)
        chunks = [c async for c in stream]
        await close_aio_sessions(dashscope_sdk)  # the SDK's session of this event loop
        return plain, chunks

    plain, chunks = asyncio.run(main())
    assert plain.usage.output_tokens == 16 and len(chunks) == 4
    assert [r.total_tokens for r in records(meter)] == [38, 38]


# --- LangChain ------------------------------------------------------------------------------

def test_langchain_chat_openai(make_meter, server):
    langchain_openai = pytest.importorskip("langchain_openai")
    meter = make_meter()
    chat = langchain_openai.ChatOpenAI(model="qwen-plus", api_key=KEY,
                                       base_url=server.compatible,
                                       http_client=meter.httpx_client(),
                                       http_async_client=meter.httpx_async_client())
    answer = chat.invoke("你是誰?")
    assert answer.content.startswith("我是")
    streamed = "".join(chunk.content for chunk in chat.stream("你是誰?"))
    assert streamed == answer.content
    plain, streamed_record = records(meter)
    assert plain.total_tokens == streamed_record.total_tokens > 0
    assert not streamed_record.usage_estimated  # usage asked for although LangChain did not


# --- concurrency ----------------------------------------------------------------------------

def test_32_threads_share_one_budget_and_limiter(make_meter, server):
    meter = make_meter(budget=qm.Budget("0.0006 CNY"),
                       limiter=qm.RateLimiter(limits={"qwen-plus": (10_000, 10_000_000)}))
    wrapped = client(meter, server)
    outcomes = []

    def worker():
        for _ in range(3):
            try:
                wrapped.chat.completions.create(model="qwen-plus", messages=HELLO, max_tokens=50)
                outcomes.append("ok")
            except qm.BudgetExceeded:
                outcomes.append("refused")

    threads = [threading.Thread(target=worker) for _ in range(32)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    logged = [r for r in records(meter) if r.status == "ok"]
    refused = [r for r in records(meter) if r.status == "refused"]
    assert len(logged) == outcomes.count("ok") > 0 and "refused" in outcomes
    assert len(refused) == outcomes.count("refused")
    status = meter.budgets[0].status()
    assert status.committed == sum(Decimal(r.cost) for r in logged) <= status.limit
    assert status.reserved == 0
    assert meter.limiter.usage("qwen-plus") == (len(logged), 38 * len(logged))


def test_log_lines_are_json(make_meter, server, tmp_path):
    meter = make_meter()
    client(meter, server).chat.completions.create(model="qwen-plus", messages=HELLO)
    for line in (tmp_path / "usage.jsonl").read_text().splitlines():
        assert json.loads(line)["version"] == SCHEMA_VERSION


def test_any_httpx_client(make_meter, server):
    httpx = pytest.importorskip("httpx")
    meter = make_meter()
    with meter.wrap(httpx.Client(base_url=server.compatible,
                                 headers={"Authorization": f"Bearer {KEY}"})) as http:
        reply = http.post("/chat/completions", json={"model": "qwen-plus", "messages": HELLO})
        assert reply.json()["usage"]["total_tokens"] == 38
        assert http.post("/models/other", json={}).status_code == 501  # not metered, passed on
    (record,) = records(meter)
    assert record.total_tokens == 38


def test_default_log_is_never_the_working_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    meter = qm.Meter()
    meter.begin({"model": "qwen-plus", "messages": HELLO}).finish(
        {"prompt_tokens": 22, "completion_tokens": 16})
    meter.close()
    assert (tmp_path / "data" / "qwen_meter" / "usage.jsonl").is_file()
    assert not list(tmp_path.glob("*.jsonl"))


def test_attribution_and_observers_reach_the_record(tmp_path: Path) -> None:
    """Per-call tags/user/metadata from `attribute` blocks, and observers seeing each event."""
    import qwen_meter as qm

    seen: list[str] = []

    class Spy(qm.Observer):
        def on_begin(self, call: Any) -> None:
            seen.append("begin")

        def on_record(self, record: Any, call: Any) -> None:
            seen.append(f"record:{record.status}")

    meter = qm.Meter(log=tmp_path / "u.jsonl", observers=[Spy()], tags=["app=demo"])
    request = {"model": "qwen-plus", "messages": [{"role": "user", "content": "你好"}]}
    with qm.attribute(tags=["feature=search"], user="李娜", metadata={"run": "7"}), \
            qm.attribute(tags=["step=2"]):  # blocks nest: tags add up
        call = meter.begin(request)
    outside = meter.begin(request)
    # What the server would bill: qwen_meter's own count (another figure would warn).
    prompt = qm.count_messages(request["messages"], "qwen-plus").tokens
    usage = {"prompt_tokens": prompt, "completion_tokens": 2, "total_tokens": prompt + 2}
    record = call.finish(usage)
    outside.finish(usage)
    assert record.tags == ("app=demo", "feature=search", "step=2")
    assert record.user == "李娜" and record.metadata == {"run": "7"}
    assert outside.tags == ("app=demo",) and outside.user is None and outside.metadata == {}
    assert seen == ["begin", "begin", "record:ok", "record:ok"]
    logged = qm.read_usage(tmp_path / "u.jsonl")
    assert logged[0].metadata == {"run": "7"}


def test_a_200_that_is_not_json_is_recorded_unknown_at_the_estimate(make_meter, server):
    # issue 26: the client got no answer it can read, but the server may have billed it
    meter = make_meter()
    server.push({"non_json": "<html>gateway timeout page</html>"})
    with meter.httpx_client() as client:
        answer = client.post(f"{server.compatible}/chat/completions",
                             json={"model": "qwen-plus", "max_tokens": 50,
                                   "messages": [{"role": "user", "content": "你好"}]})
    assert answer.status_code == 200 and answer.text.startswith("<html>")
    (record,) = list(meter.log)
    assert record.status == "unknown" and record.usage_estimated
    assert "not a JSON answer" in record.error
    assert (record.prompt_tokens, record.completion_tokens) == (
        record.estimated_prompt_tokens, 50)
    assert record.cost == record.estimated_cost_high
