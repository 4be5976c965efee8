"""The metered pipeline at its edges, with the real SDKs against the local DashScope stand-in:
settlement that cannot lose a billed call, the async path, unknown models, regions from the
endpoint, attribution, composed retries, classification, estimates, streams, refused calls."""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
import warnings
from decimal import Decimal
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st
from meter_fixtures import close_aio_sessions

import qwen_meter as qm
from qwen_meter.limits.store import MemoryStore, StoreUnavailable
from qwen_meter.meter.sse import SSEDecoder
from qwen_meter.testing.dashscope import REPLY, FakeDashScope

openai = pytest.importorskip("openai")

HELLO = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "你是誰?"}]
KEY = "sk-secret0123456789abcdef"
INTL = "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"
CN = "https://dashscope.aliyuncs.com/compatible-mode/v1"


# `server` and `make_meter` come from tests/meter_fixtures.py (a plugin, see conftest).


@pytest.fixture
def dashscope_sdk(server):
    dashscope = pytest.importorskip("dashscope")
    previous = dashscope.base_http_api_url
    dashscope.base_http_api_url = server.native
    yield dashscope
    dashscope.base_http_api_url = previous


def records(meter):
    return list(meter.log)


# --- one call through each real client -------------------------------------------------------

CLIENTS = ["openai", "openai-async", "httpx", "dashscope", "dashscope-async", "langchain",
           "langchain-async"]


def one_call(kind: str, meter: qm.Meter, server: FakeDashScope, model: str = "qwen-plus",
             **extra: Any) -> str:
    """Make one plain call with ``kind``'s real client; the reply text the caller got."""
    if kind == "openai":
        wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
        reply = wrapped.chat.completions.create(model=model, messages=HELLO, **extra)
        return str(reply.choices[0].message.content)
    if kind == "openai-async":
        async def main() -> str:
            wrapped = meter.wrap(openai.AsyncOpenAI(api_key=KEY, base_url=server.compatible))
            reply = await wrapped.chat.completions.create(model=model, messages=HELLO, **extra)
            return str(reply.choices[0].message.content)
        return asyncio.run(main())
    if kind == "httpx":
        with meter.wrap(httpx.Client(base_url=server.compatible)) as http:
            answer = http.post("/chat/completions",
                               json={"model": model, "messages": HELLO, **extra})
            return str(answer.json()["choices"][0]["message"]["content"])
    if kind.startswith("dashscope"):
        dashscope = pytest.importorskip("dashscope")
        dashscope.base_http_api_url = server.native
        if kind == "dashscope":
            response = meter.wrap(dashscope.Generation).call(
                model=model, messages=HELLO, api_key=KEY, result_format="message", **extra)
        else:
            async def main() -> Any:
                try:
                    return await meter.wrap(dashscope.AioGeneration).call(
                        model=model, messages=HELLO, api_key=KEY, result_format="message",
                        **extra)
                finally:  # the SDK keeps an aiohttp session per event loop until told
                    await close_aio_sessions(dashscope)
            response = asyncio.run(main())
        assert response.status_code == 200, response
        return str(response.output.choices[0].message.content)
    langchain_openai = pytest.importorskip("langchain_openai")
    chat = langchain_openai.ChatOpenAI(model=model, api_key=KEY, base_url=server.compatible,
                                       http_client=meter.httpx_client(),
                                       http_async_client=meter.httpx_async_client(), **extra)
    if kind == "langchain":
        return str(chat.invoke(HELLO).content)
    return str(asyncio.run(chat.ainvoke(HELLO)).content)


# --- settlement cannot lose a billed call ----------------------------------------------------

class CommitFails(MemoryStore):
    def ledger_commit(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("store down at commit (injected)")


class AdjustFails(MemoryStore):
    def window_adjust(self, *args: Any, **kwargs: Any) -> Any:
        raise StoreUnavailable("store down at reconcile (injected)")


class LogFails(qm.UsageLog):
    def append(self, record: qm.UsageRecord) -> None:
        raise qm.UsageLogError("disk full (injected)")


class Seen(qm.Observer):
    def __init__(self) -> None:
        self.records: list[qm.UsageRecord] = []

    def on_record(self, record: qm.UsageRecord, call: Any) -> None:
        self.records.append(record)


@pytest.mark.parametrize("kind", CLIENTS)
def test_odd_usage_still_returns_the_response_and_records_an_estimate(make_meter, server, kind):
    meter = make_meter(budget=qm.Budget("1 CNY"), limiter=qm.RateLimiter())
    prefix = "input" if kind.startswith("dashscope") else "prompt"
    server.push({"usage": {f"{prefix}_tokens": -3, "completion_tokens": 5, "output_tokens": 5,
                           "total_tokens": 2}})
    assert one_call(kind, meter, server) == REPLY
    (record,) = records(meter)
    assert record.status == "ok"
    assert record.usage_estimated and any("usage not parsed" in w for w in record.warnings)
    assert record.prompt_tokens == record.estimated_prompt_tokens == 22
    assert record.completion_tokens == 16  # the reply, counted locally
    status = meter.budgets[0].status()
    assert status.reserved == 0 and status.committed == Decimal(record.cost)
    assert meter.limiter.usage("qwen-plus") == (1, record.total_tokens)


@pytest.mark.parametrize("kind", CLIENTS)
def test_cost_failing_at_settlement_returns_the_response(make_meter, server, kind, monkeypatch):
    import qwen_meter.billing.unlisted as unlisted

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise qm.NotOffered("qwen-plus", "cn", ())

    meter = make_meter(budget=qm.Budget("1 CNY"))
    monkeypatch.setattr(unlisted, "price_offer", broken)  # settlement's pricing
    assert one_call(kind, meter, server) == REPLY
    (record,) = records(meter)
    assert record.status == "ok" and record.cost is None and "not offered" in record.unpriced
    status = meter.budgets[0].status()  # unpriced: the reserved worst case is kept as spend
    assert status.reserved == 0 and status.committed == Decimal(record.estimated_cost_high)


@pytest.mark.parametrize("kind", CLIENTS)
def test_store_down_at_commit_and_reconcile(make_meter, server, kind):
    budget = qm.Budget("1 CNY", store=CommitFails())
    limiter = qm.RateLimiter(store=AdjustFails())
    meter = make_meter(budget=budget, limiter=limiter)
    assert one_call(kind, meter, server) == REPLY
    (record,) = records(meter)
    assert record.status == "ok" and record.degraded and Decimal(record.cost) > 0
    assert any("commit failed" in w for w in record.warnings)
    assert any("reconcile failed" in w for w in record.warnings)


@pytest.mark.parametrize("kind", CLIENTS)
def test_log_write_failing_loses_nothing(make_meter, server, kind, caplog):
    seen = Seen()
    meter = make_meter(log=LogFails(), observers=[seen], budget=qm.Budget("1 CNY"))
    with caplog.at_level(logging.ERROR, logger="qwen_meter.meter"):
        assert one_call(kind, meter, server) == REPLY
    (record,) = seen.records
    assert record.status == "ok" and any("log write failed" in w for w in record.warnings)
    assert record.id in caplog.text  # the record's JSON is in the ERROR line
    assert meter.budgets[0].status().committed == Decimal(record.cost)


def test_each_hold_is_settled_once(make_meter, server):
    meter = make_meter(budget=qm.Budget("1 CNY"), limiter=qm.RateLimiter())
    call = meter.begin({"model": "qwen-plus", "messages": HELLO})
    first = call.finish({"prompt_tokens": 22, "completion_tokens": 16})
    assert call.fail(RuntimeError("late")) is first
    assert call.finish(None) is first
    assert len(records(meter)) == 1
    status = meter.budgets[0].status()
    assert status.committed == Decimal(first.cost) and status.reserved == 0


def test_429_then_limiter_refusal_releases_and_records(make_meter, server):
    limiter = qm.RateLimiter(limits={"qwen-plus": (1, None)})
    meter = make_meter(budget=qm.Budget("1 CNY"), limiter=limiter, wait=False)
    server.push({"status": 429, "code": "Throttling.RateQuota"})
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    with pytest.raises(qm.RateLimited):
        wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
    (record,) = records(meter)
    assert record.status == "refused" and record.error_kind == "RateLimited"
    assert record.attempts == 2
    assert meter.budgets[0].status().reserved == 0 == meter.budgets[0].status().committed


# --- async: the loop never stalls --------------------------------------------------------------

def test_no_blocking_call_runs_on_the_loop_while_50_calls_wait(make_meter, server, tmp_path,
                                                              monkeypatch):
    """While 50 AsyncOpenAI calls wait on the limiter, every wait is an ``await`` and every op
    that may block (the usage log's write) runs in a worker thread: nothing the meter does holds
    the loop's thread. How long the loop stalls, in milliseconds, is measured by
    ``benchmarks/bench_meter.py`` — a figure, not a pass/fail line that a busy machine trips."""
    loop_thread: list[int] = []
    on_loop: list[str] = []  # blocking calls made from the loop's thread
    writers: list[int] = []  # threads that wrote the log
    waits: list[float] = []  # waits the limiter asked for, awaited

    def watched(name: str, blocking: Any) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() in loop_thread:
                on_loop.append(name)
            return blocking(*args, **kwargs)
        return call

    monkeypatch.setattr(time, "sleep", watched("time.sleep", time.sleep))

    async def async_sleep(seconds: float) -> None:
        waits.append(seconds)
        await asyncio.sleep(seconds)

    limiter = qm.RateLimiter(limits={"qwen-plus": (900, None)},  # 15 a second
                             sleep=watched("RateLimiter.sleep", time.sleep),
                             async_sleep=async_sleep)
    admitted: list[Any] = []
    acquire = limiter.acquire_async

    async def acquire_async(*args: Any, **kwargs: Any) -> Any:
        admitted.append(await acquire(*args, **kwargs))
        return admitted[-1]

    monkeypatch.setattr(limiter, "acquire_async", acquire_async)
    # A durable log: each write ends in an fsync, the blocking kind of write, so under asyncio
    # it must happen on the log's writer thread. (A "flush" log's write is one O_APPEND write
    # into the page cache, cheaper than a thread hop, and runs on the loop by design.)
    log = qm.JsonlLog(tmp_path / "usage.jsonl", durability="fsync")
    write_lines = log._write

    def write(lines: Any) -> Any:
        writers.append(threading.get_ident())
        return write_lines(lines)

    monkeypatch.setattr(log, "_write", watched("JsonlLog._write", write))
    monkeypatch.setattr(os, "fsync", watched("os.fsync", os.fsync))
    meter = make_meter(limiter=limiter, budget=qm.Budget("10 CNY"), log=log)
    before = len(server.billed)  # the stand-in serves the whole module
    wrapped = meter.wrap(openai.AsyncOpenAI(api_key=KEY, base_url=server.compatible))

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        await asyncio.gather(*(wrapped.chat.completions.create(model="qwen-plus",
                                                               messages=HELLO)
                               for _ in range(50)))

    asyncio.run(main())
    assert on_loop == []
    # The limiter made them wait, by awaiting: at most 15 admitted in any second of its clock.
    per_second = collections.Counter(permit.bucket for permit in admitted)
    assert len(admitted) == 50 and max(per_second.values()) <= 15 and len(per_second) >= 4
    assert waits and all(w > 0 for w in waits)
    assert limiter.usage("qwen-plus")[0] == 50
    assert writers and not set(writers) & set(loop_thread)
    records = qm.read_usage(tmp_path / "usage.jsonl")
    assert len(records) == 50 and {r.status for r in records} == {"ok"}
    billed = [r for r in qm.read_usage(tmp_path / "usage.jsonl") if r.status == "ok"]
    assert len(billed) == len(server.billed) - before == 50
    assert meter.budgets[0].status().reserved == 0
    assert meter.budgets[0].status().committed == sum(Decimal(r.cost) for r in billed)


def test_async_steps_offload_blocking_stores(make_meter, server, tmp_path):
    """Store operations of a blocking (SQLite) store leave the event loop thread."""
    from qwen_meter.limits.store.sqlite import SQLiteStore

    threads: list[str] = []

    class Watched(SQLiteStore):
        def ledger_reserve(self, *args: Any, **kwargs: Any) -> Any:
            threads.append(threading.current_thread().name)
            return super().ledger_reserve(*args, **kwargs)

    meter = make_meter(budget=qm.Budget("1 CNY", store=Watched(tmp_path / "spend.db")))

    async def main() -> None:
        call = await meter.begin_async({"model": "qwen-plus", "messages": HELLO})
        await call.finish_async({"prompt_tokens": 22, "completion_tokens": 16})

    asyncio.run(main())
    assert threads and threads[0] != threading.main_thread().name


# --- unknown models -------------------------------------------------------------------------

@pytest.mark.parametrize("model", ["qwen3.8-plus", "qwen3.9-flash", "qwen-plus-2026-08-01",
                                   "deepseek-v3.2", "kimi-k2", "glm-4.6"])
def test_new_model_goes_through_unpriced(make_meter, server, model):
    meter = make_meter(limiter=qm.RateLimiter(), budget=qm.Budget("1 CNY", mode="soft"))
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    reply = wrapped.chat.completions.create(model=model, messages=HELLO)
    assert reply.choices[0].message.content == REPLY
    (record,) = records(meter)
    assert record.status == "ok" and record.cost is None and record.unpriced
    assert record.estimate_exact is False and record.total_tokens == reply.usage.total_tokens
    assert any(("not" in w and "catalogue" in w) or "not listed" in w for w in record.warnings)


def test_unpriced_under_a_hard_budget_is_refused_with_the_fix(make_meter, server):
    meter = make_meter(budget=qm.Budget("1 CNY"))
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    before = len(server.requests)
    with pytest.raises(qm.UnpricedCall) as caught:
        wrapped.chat.completions.create(model="deepseek-v3.2", messages=HELLO)
    assert "catalogue override" in str(caught.value) and "fallback_price" in str(caught.value)
    assert len(server.requests) == before
    (record,) = records(meter)
    assert record.status == "refused" and record.error_kind == "UnpricedCall"


def test_fallback_price_and_allow(make_meter, server):
    fallback = qm.FallbackPrice("2", "8", "CNY")
    meter = make_meter(budget=qm.Budget("1 CNY"), fallback_price=fallback)
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    reply = wrapped.chat.completions.create(model="kimi-k2", messages=HELLO, max_tokens=50)
    (record,) = records(meter)
    usage = reply.usage
    expected = (usage.prompt_tokens * 2 + usage.completion_tokens * 8) / Decimal(10**6)
    assert Decimal(record.cost) == expected and record.currency == "CNY"
    assert Decimal(record.estimated_cost_high) >= expected
    assert meter.budgets[0].status().committed == expected
    assert any("fallback" in w for w in record.warnings)

    allowing = make_meter(budget=qm.Budget("1 CNY"), unpriced="allow",
                          log=None, observers=[seen := Seen()])
    allowing.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible)).chat.completions \
        .create(model="glm-4.6", messages=HELLO)
    assert seen.records[0].status == "ok" and seen.records[0].cost is None
    assert allowing.budgets[0].status().committed == 0
    with pytest.raises(qm.ConfigurationError):
        qm.Meter(unpriced="maybe", log=None)
    with pytest.raises(qm.ConfigurationError):
        qm.FallbackPrice("-1", "2", "CNY")


def test_unknown_model_limits_only_when_configured(make_meter, server):
    limiter = qm.RateLimiter(limits={"deepseek-v3.2": (1, None)})
    meter = make_meter(limiter=limiter, wait=False)
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    wrapped.chat.completions.create(model="glm-4.6", messages=HELLO)
    wrapped.chat.completions.create(model="glm-4.6", messages=HELLO)  # no limits known
    wrapped.chat.completions.create(model="deepseek-v3.2", messages=HELLO)
    with pytest.raises(qm.RateLimited):
        wrapped.chat.completions.create(model="deepseek-v3.2", messages=HELLO)


# --- region from the endpoint -----------------------------------------------------------------

def test_region_for_url():
    assert qm.region_for_url(INTL) == "intl" and qm.region_for_url(CN) == "cn"
    assert qm.region_for_url("https://batch.dashscope.aliyuncs.com/compatible-mode/v1") == "cn"
    assert qm.region_for_url("http://127.0.0.1:8000/v1") is None
    assert qm.region_for_url("https://dashscope.aliyuncs.com.evil.example/v1") is None


@pytest.mark.parametrize("module", ["httpx", "httpx2"])
def test_intl_client_priced_in_usd_with_intl_limits(make_meter, server, module):
    hx = pytest.importorskip(module)
    meter = make_meter(limiter=qm.RateLimiter(), budget=qm.Budget("1 USD"))
    user_http = hx.Client(transport=server.transport(hx))  # the user's own transport
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=INTL, http_client=user_http))
    reply = wrapped.chat.completions.create(model="qwen-plus", messages=HELLO, max_tokens=100)
    (record,) = records(meter)
    assert record.region == "intl" and record.currency == "USD"
    offer = qm.resolve("qwen-plus").offer("intl")
    expected = qm.cost(reply.usage, "qwen-plus", region="intl")
    assert Decimal(record.cost) == expected.amount
    intl = meter.limiter_for("intl")
    assert intl.limits_for("qwen-plus").rpm == offer.rate_limits.rpm == 600
    assert intl.usage("qwen-plus") == (1, record.total_tokens)
    assert meter.limiter.usage("qwen-plus") == (0, 0)  # Beijing's quota untouched
    assert meter.budgets[0].status().committed == expected.amount


def test_explicit_region_wins(make_meter, server):
    meter = make_meter(region="cn")
    user_http = httpx.Client(transport=server.transport())
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=INTL, http_client=user_http))
    wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
    (record,) = records(meter)
    assert record.region == "cn" and record.currency == "CNY"


# --- attribution ------------------------------------------------------------------------------

def test_request_user_wins_over_the_meter_default(make_meter, server):
    budget = qm.Budget("1 CNY", scope="user")
    meter = make_meter(user="张伟", budget=budget)
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    wrapped.chat.completions.create(model="qwen-plus", messages=HELLO, user="李娜",
                                    metadata={"ticket": "42"})
    (record,) = records(meter)
    assert record.user == "李娜" and record.metadata == {"ticket": "42"}
    assert budget.status(key="李娜").committed == Decimal(record.cost)
    assert budget.status(key="张伟").committed == 0


def test_per_call_tags_from_threads(make_meter, server):
    meter = make_meter()
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    barrier = threading.Barrier(8)

    def worker(n: int) -> None:
        with qm.attribute(tags=[f"worker={n}"], user=f"u{n}"):
            barrier.wait()
            for _ in range(2):
                wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    logged = records(meter)
    assert len(logged) == 16
    assert all(r.tags == (f"worker={r.user[1:]}",) for r in logged)
    assert sorted(r.user for r in logged) == sorted(f"u{n}" for n in range(8) for _ in "ab")


def test_per_call_tags_from_tasks(make_meter, server):
    meter = make_meter()
    wrapped = meter.wrap(openai.AsyncOpenAI(api_key=KEY, base_url=server.compatible))

    async def task(n: int) -> None:
        with qm.attribute(tags=[f"task={n}"], metadata={"n": str(n)}):
            await asyncio.sleep(0.001 * (8 - n))  # interleave
            await wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)

    async def main() -> None:
        await asyncio.gather(*(task(n) for n in range(8)))

    asyncio.run(main())
    logged = records(meter)
    assert len(logged) == 8 and all(r.tags == (f"task={r.metadata['n']}",) for r in logged)


# --- retries that compose ---------------------------------------------------------------------

def test_openai_keeps_its_retries_without_multiplying(make_meter, server):
    meter = make_meter()
    original = openai.OpenAI(api_key=KEY, base_url=server.compatible, max_retries=2)
    wrapped = meter.wrap(original)
    assert wrapped.max_retries == 2  # connection errors are still the client's to retry
    server.push(*[{"status": 503, "code": "ServiceUnavailable", "message": "busy"}] * 9)
    before = len(server.requests)
    with pytest.raises(openai.InternalServerError):
        wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
    assert len(server.requests) - before == 3  # the meter's 1 + 2 retries, not 3 x 3
    (record,) = records(meter)
    assert record.attempts == 3 and record.error_kind == "server"


def test_langchain_retries_do_not_compound(make_meter, server):
    langchain_openai = pytest.importorskip("langchain_openai")
    meter = make_meter()
    chat = langchain_openai.ChatOpenAI(model="qwen-plus", api_key=KEY,
                                       base_url=server.compatible, max_retries=2,
                                       http_client=meter.httpx_client())
    server.push(*[{"status": 503, "code": "ServiceUnavailable", "message": "busy"}] * 9)
    before = len(server.requests)
    with pytest.raises(openai.InternalServerError):
        chat.invoke("你好")
    assert len(server.requests) - before == 3
    assert len(records(meter)) == 1


def test_retries_left_to_the_client(make_meter, server):
    meter = make_meter(retry=qm.RetryPolicy(max_retries=0))
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible,
                                       max_retries=1))
    server.push({"status": 503, "code": "ServiceUnavailable", "message": "busy",
                 "retry_after": 0})
    reply = wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
    assert reply.choices[0].message.content == REPLY
    assert [r.status for r in records(meter)] == ["error", "ok"]


# --- classification ---------------------------------------------------------------------------

def test_dashscope_error_table():
    tpm = qm.classify(429, {"error": {"message": "You exceeded your current quota, please "
                                      "check your plan and billing details",
                                      "type": "insufficient_quota"}})
    assert isinstance(tpm, qm.ServerRateLimited) and tpm.retryable and tpm.limit == "tokens"
    allocated = qm.classify(429, {"code": "Throttling.AllocationQuota",
                                  "message": "Allocated quota exceeded, please increase your "
                                  "quota limit."})
    assert allocated.retryable and allocated.limit == "tokens"
    arrears = qm.classify(400, {"code": "Arrearage", "message": "Access denied, please make "
                                "sure your account is in good standing."})
    assert isinstance(arrears, qm.QuotaExhausted) and not arrears.retryable
    free = qm.classify(403, {"error": {"code": "AllocationQuota.FreeTierOnly", "message":
                                       "The free tier of the model has been exhausted."}})
    assert isinstance(free, qm.QuotaExhausted)
    assert qm.classify(429, {"code": "Throttling.RateQuota"}).limit == "requests"


def test_tpm_429_is_retried(make_meter, server):
    meter = make_meter()
    server.push({"status": 429, "code": "insufficient_quota",
                 "message": "You exceeded your current quota, please check your plan and "
                 "billing details"})
    assert one_call("openai", meter, server) == REPLY
    (record,) = records(meter)
    assert record.status == "ok" and record.attempts == 2


# --- estimates that do not undercount ---------------------------------------------------------

def test_dashscope_prompt_and_messages_are_both_counted(make_meter, dashscope_sdk):
    meter = make_meter()
    generation = meter.wrap(dashscope_sdk.Generation)
    response = generation.call(model="qwen-plus", messages=HELLO, prompt="再說一遍,詳細一點。",
                               api_key=KEY)
    history = generation.call(model="qwen-plus", prompt="再說一遍。", api_key=KEY,
                              history=[{"user": "你是誰?", "bot": REPLY}])
    first, second = records(meter)
    assert first.estimated_prompt_tokens == response.usage.input_tokens == first.prompt_tokens
    assert second.estimated_prompt_tokens == history.usage.input_tokens


def test_calibration_is_per_request_shape(make_meter, server):
    server.prompt_offset = 4
    meter = make_meter()
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    with pytest.warns(qm.CalibrationWarning, match=r"qwen-plus: the server counted \+4") as seen:
        for _ in range(5):
            wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
        wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
        wrapped.chat.completions.create(model="qwen-plus", messages=HELLO[1:])  # no system
    assert len(seen) == 2  # once per request shape
    *_, with_system, without = records(meter)
    assert with_system.calibration == 4 and with_system.prompt_diff == 4
    assert without.calibration == 0


def test_a_warning_made_an_error_does_not_cost_the_record(make_meter, server):
    """With -W error (as this suite runs qwen_meter's warnings), the calibration warning raised
    while settling must not lose the billed call: the record is written and says why."""
    server.prompt_offset = 3
    meter = make_meter()
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    with warnings.catch_warnings():
        warnings.simplefilter("error", qm.CalibrationWarning)
        reply = wrapped.chat.completions.create(model="qwen-plus", messages=HELLO)
    (record,) = records(meter)
    assert record.status == "ok" and record.prompt_tokens == reply.usage.prompt_tokens
    assert record.prompt_diff == 3
    assert any(w.startswith("calibration: qwen-plus: the server counted +3")
               for w in record.warnings)


def test_every_warning_is_a_qwen_meter_warning():
    from qwen_meter.limits.budget.values import BudgetWarning
    from qwen_meter.report.charts import MissingFontWarning

    for kind, standard in ((qm.CalibrationWarning, RuntimeWarning),
                           (qm.StoreUnavailableWarning, RuntimeWarning),
                           (qm.TornLineWarning, UserWarning), (BudgetWarning, UserWarning),
                           (MissingFontWarning, UserWarning)):
        assert issubclass(kind, qm.QwenMeterWarning) and issubclass(kind, standard)
    with pytest.warns(qm.QwenMeterWarning, match="moved to qwen_meter.meter.log"):
        import importlib
        import sys

        sys.modules.pop("qwen_meter.log", None)
        importlib.import_module("qwen_meter.log")


def test_negative_offset_never_makes_a_negative_reservation(make_meter):
    meter = make_meter(budget=qm.Budget("1 CNY"), limiter=qm.RateLimiter())
    request = {"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}]}
    shape = qm.meter.request_shape("qwen-plus", request, False)
    with pytest.warns(qm.CalibrationWarning, match="counted -500"):
        for _ in range(5):
            meter.calibration.observe(shape, -500)
    call = meter.begin(request)
    assert call.calibration == -500 and call.estimated_prompt_tokens == 0
    assert call.tokens_reserved >= 0
    call.finish({"prompt_tokens": 10, "completion_tokens": 1})


# --- streams ----------------------------------------------------------------------------------

@pytest.mark.parametrize("sep", ["\r\n", "\r", "\n"])
def test_streams_with_any_line_ending(make_meter, server, sep):
    meter = make_meter()
    bare = openai.OpenAI(api_key=KEY, base_url=server.compatible)
    server.push({"sep": sep})
    expected = [c.choices[0].delta.content for c in bare.chat.completions.create(
        model="qwen-plus", messages=HELLO, stream=True) if c.choices]
    server.push({"sep": sep})
    wrapped = meter.wrap(bare)
    chunks = list(wrapped.chat.completions.create(model="qwen-plus", messages=HELLO,
                                                  stream=True))
    assert [c.choices[0].delta.content for c in chunks if c.choices] == expected
    assert all(c.usage is None for c in chunks)  # the usage chunk we asked for stays hidden
    (record,) = records(meter)
    assert record.status == "ok" and not record.usage_estimated and record.total_tokens == 38


def test_crlf_native_stream(make_meter, dashscope_sdk, server):
    meter = make_meter()
    server.push({"sep": "\r\n"})
    chunks = list(meter.wrap(dashscope_sdk.Generation).call(
        model="qwen-plus", messages=HELLO, api_key=KEY, stream=True, incremental_output=True,
        result_format="message"))
    assert len(chunks) == 4
    (record,) = records(meter)
    assert record.status == "ok" and record.total_tokens == 38


def test_streams_without_finish_reason_are_incomplete(make_meter, dashscope_sdk, server):
    meter = make_meter()
    server.push({"no_finish": True})
    list(meter.wrap(dashscope_sdk.Generation).call(
        model="qwen-plus", messages=HELLO, api_key=KEY, stream=True, incremental_output=True,
        result_format="message"))
    server.push({"no_finish": True})
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    list(wrapped.chat.completions.create(model="qwen-plus", messages=HELLO, stream=True))
    native, compatible = records(meter)
    assert native.status == "incomplete" and native.completion_tokens > 0
    assert compatible.status == "incomplete"


@given(st.lists(st.sampled_from([b"data: a", b"data:b", b": c", b"event: e", b"id: 7",
                                 b"data: {\"x\": 1}", b""]), max_size=12),
       st.sampled_from([b"\n", b"\r\n", b"\r"]), st.lists(st.integers(1, 9), max_size=20))
def test_sse_decoder_is_split_invariant(lines, sep, cuts):
    stream = b"".join(line + sep for line in lines)
    whole = SSEDecoder()
    expected = whole.feed(stream)
    expected_tail = whole.flush()
    split = SSEDecoder()
    got, pos = [], 0
    for cut in cuts:
        got += split.feed(stream[pos:pos + cut])
        pos += cut
    got += split.feed(stream[pos:])
    tail = split.flush()
    assert [e.data for e in got] + [e.data for e in tail[0]] == \
        [e.data for e in expected] + [e.data for e in expected_tail[0]]
    assert b"".join(e.raw for e in got) + tail[1] == stream  # bytes pass through unchanged


# --- nothing passes unseen --------------------------------------------------------------------

def test_responses_and_completions_are_metered(make_meter, server):
    meter = make_meter(budget=qm.Budget("1 CNY"))
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    response = wrapped.responses.create(model="qwen-plus", input="你是誰?",
                                        instructions="You are a helpful assistant.")
    streamed = list(wrapped.responses.create(model="qwen-plus", input="你是誰?", stream=True))
    completion = wrapped.completions.create(model="qwen-plus", prompt="你是誰?", max_tokens=50)
    plain, stream, text = records(meter)
    assert (plain.endpoint, plain.total_tokens) == ("responses", response.usage.total_tokens)
    assert plain.estimated_prompt_tokens == response.usage.input_tokens
    assert stream.endpoint == "responses" and stream.status == "ok" and streamed
    assert not stream.usage_estimated
    assert (text.endpoint, text.total_tokens) == ("completions", completion.usage.total_tokens)
    assert all(r.cost for r in (plain, stream, text))
    assert meter.budgets[0].status().reserved == 0


def test_dashscope_multimodal_and_embeddings_are_wrappable(make_meter, dashscope_sdk):
    meter = make_meter()
    conversation = meter.wrap(dashscope_sdk.MultiModalConversation)
    answer = conversation.call(model="qwen-vl-plus", api_key=KEY,
                               messages=[{"role": "user", "content": [{"text": "你是誰?"}]}])
    assert answer.status_code == 200
    embedding = meter.wrap(dashscope_sdk.TextEmbedding)
    vectors = embedding.call(model="text-embedding-v4", input=["你好", "世界"], api_key=KEY)
    assert vectors.status_code == 200
    chat, embedded = records(meter)
    assert chat.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens
    billed = vectors.usage["total_tokens"]
    assert (embedded.endpoint, embedded.prompt_tokens) == ("embeddings", billed)
    assert embedded.estimated_prompt_tokens == billed


def test_refused_calls_are_recorded_unless_turned_off(make_meter, server):
    seen = Seen()
    meter = make_meter(budget=qm.Budget("0.0000001 CNY"), observers=[seen])
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    with qm.attribute(tags=["feature=chat"]), pytest.raises(qm.BudgetExceeded):
        wrapped.chat.completions.create(model="qwen-plus", messages=HELLO, max_tokens=10)
    (record,) = records(meter)
    assert record.status == "refused" and record.error_kind == "BudgetExceeded"
    assert "does not fit" in record.error and record.tags == ("feature=chat",)
    assert record.estimated_cost_high and seen.records == [record]
    quiet = make_meter(budget=qm.Budget("0.0000001 CNY"), record_refused=False, log=None,
                       observers=[hush := Seen()])
    with pytest.raises(qm.BudgetExceeded):
        quiet.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible)).chat.completions \
            .create(model="qwen-plus", messages=HELLO, max_tokens=10)
    assert hush.records == []


# --- the async steps, as a gateway drives them ----------------------------------------------

def test_async_steps_settle_once_even_when_cancelled(make_meter):
    class Slow(MemoryStore):  # not the memory store by name: runs in a worker thread
        def ledger_commit(self, *args: Any, **kwargs: Any) -> Any:
            time.sleep(0.05)
            return super().ledger_commit(*args, **kwargs)

    budget = qm.Budget("1 CNY", store=Slow())
    limiter = qm.RateLimiter(limits={"qwen-plus": (2, None)}, smooth=False)
    meter = make_meter(budget=budget, limiter=limiter, wait=False)
    request = {"model": "qwen-plus", "messages": HELLO}

    async def main() -> None:
        call = await meter.begin_async(request, tags=["route=/v1/chat"], user="gw")
        settling = asyncio.ensure_future(call.finish_async(USAGE))
        await asyncio.sleep(0.01)
        settling.cancel()  # the caller goes away mid-settlement
        await asyncio.sleep(0.2)
        second = await meter.begin_async({**request, "max_tokens": 5})
        await asyncio.sleep(0)
        with pytest.raises(qm.RateLimited):  # 2 RPM: the retry's slot is refused
            await second.retry_async()
        assert second.settled

    asyncio.run(main())
    first, refused = records(meter)
    assert first.status == "ok" and first.tags == ("route=/v1/chat",) and first.user == "gw"
    assert refused.status == "refused" and refused.attempts == 2
    status = budget.status()
    assert status.committed == Decimal(first.cost) and status.reserved == 0


USAGE = {"prompt_tokens": 22, "completion_tokens": 16, "total_tokens": 38}


@pytest.mark.parametrize("kind", ["openai", "dashscope"])
def test_streams_settle_through_a_failing_store(make_meter, server, dashscope_sdk, kind):
    meter = make_meter(budget=qm.Budget("1 CNY", store=CommitFails()))
    if kind == "openai":
        wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
        text = "".join(c.choices[0].delta.content or "" for c in wrapped.chat.completions
                       .create(model="qwen-plus", messages=HELLO, stream=True) if c.choices)
    else:
        text = "".join(c.output.choices[0].message.content for c in meter.wrap(
            dashscope_sdk.Generation).call(model="qwen-plus", messages=HELLO, api_key=KEY,
                                           stream=True, incremental_output=True,
                                           result_format="message"))
    assert text == REPLY
    (record,) = records(meter)
    assert record.status == "ok" and record.degraded and record.total_tokens == 38


class Flaky(MemoryStore):
    """A memory store whose commit and window adjustments fail on demand."""

    fail_commit = False
    fail_adjust = False

    def ledger_commit(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail_commit:
            raise StoreUnavailable("injected")
        return super().ledger_commit(*args, **kwargs)

    def window_adjust(self, *args: Any, **kwargs: Any) -> Any:
        if self.fail_adjust:
            raise StoreUnavailable("injected")
        return super().window_adjust(*args, **kwargs)


usages = st.one_of(
    st.none(),
    st.fixed_dictionaries({"prompt_tokens": st.integers(-5, 200),
                           "completion_tokens": st.integers(-5, 200)}),
    st.fixed_dictionaries({"input_tokens": st.integers(0, 200),
                           "output_tokens": st.integers(0, 200)}),
    st.just({"weird": 1}), st.just("not a usage"))


@given(usage=usages, fail_commit=st.booleans(), fail_adjust=st.booleans(),
       cost_fails=st.booleans(), outcome=st.sampled_from(["finish", "fail", "both"]),
       asynchronous=st.booleans())
def test_settlement_never_raises_and_settles_once(usage, fail_commit, fail_adjust, cost_fails,
                                                  outcome, asynchronous):
    """Whatever fails while settling: no exception, one record, holds settled once."""
    import qwen_meter.billing.unlisted as unlisted

    store = Flaky()
    seen = Seen()
    budget = qm.Budget("1 CNY", store=store)
    limiter = qm.RateLimiter(store=store)
    meter = qm.Meter(log=None, budget=budget, limiter=limiter, observers=[seen])
    call = meter.begin({"model": "qwen-plus", "messages": HELLO, "max_tokens": 100})
    store.fail_commit, store.fail_adjust = fail_commit, fail_adjust
    original = unlisted.price_offer
    if cost_fails:
        unlisted.price_offer = lambda *a, **k: (_ for _ in ()).throw(qm.NotOffered("x", "cn", ()))
    try:
        async def settle() -> None:
            if outcome in ("finish", "both"):
                await call.finish_async(usage, reply={"content": REPLY})
            if outcome in ("fail", "both"):
                await call.fail_async(RuntimeError("after"))

        # Random usage disagrees with the local count on purpose: a CalibrationWarning, and
        # no other warning, may come of it.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if asynchronous:
                asyncio.run(settle())
            else:
                if outcome in ("finish", "both"):
                    call.finish(usage, reply={"content": REPLY})
                if outcome in ("fail", "both"):
                    call.fail(RuntimeError("after"))
        assert all(w.category is qm.CalibrationWarning for w in caught), caught
    finally:
        unlisted.price_offer = original
    (record,) = seen.records
    status = budget.status()
    if record.status == "ok" and not fail_commit:
        committed = Decimal(record.cost) if record.cost else Decimal(record.estimated_cost_high)
        assert status.reserved == 0 and status.committed == committed
    elif record.status == "error":
        assert status.reserved == 0 == status.committed
    assert not record.degraded or fail_commit or fail_adjust
    if (record.status == "ok" and fail_commit) or (record.status == "error" and fail_adjust):
        assert record.degraded  # commit / release (window adjust) failed, and it says so
    if record.status == "ok" and not isinstance(usage, dict):
        assert record.usage_estimated and record.completion_tokens == 16  # the reply, counted


def test_model_not_offered_in_the_region_is_metered(make_meter, server):
    meter = make_meter(region="intl", limiter=qm.RateLimiter())
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    reply = wrapped.chat.completions.create(model="qwen3-max-2025-09-23", messages=HELLO)
    assert reply.choices[0].message.content == REPLY
    (record,) = records(meter)
    assert record.status == "ok" and record.region == "intl" and record.cost is None
    assert "not offered in region 'intl'" in record.unpriced
    hard = make_meter(region="intl", budget=qm.Budget("1 USD"), log=None)
    with pytest.raises(qm.UnpricedCall, match="intl"):
        hard.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible)).chat.completions \
            .create(model="qwen3-max-2025-09-23", messages=HELLO)


def test_crlf_stream_chunks_are_not_held_back(make_meter, server):
    """Each CRLF-separated event reaches the caller when it arrives, not at the end."""
    meter = make_meter()
    server.push({"sep": "\r\n", "slow": 0.1})
    wrapped = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))
    started = time.perf_counter()
    arrivals = [time.perf_counter() - started for c in wrapped.chat.completions.create(
        model="qwen-plus", messages=HELLO, stream=True) if c.choices]
    assert len(arrivals) >= 5 and arrivals[0] < arrivals[-1] - 0.3
    assert records(meter)[0].status == "ok"
