"""Every billed call is accounted exactly once when the caller cancels or the connection times
out after sending: real openai / httpx / dashscope SDKs and anyio against the DashScope
stand-in, whose ``billed`` journal is the truth the records are counted against.

Sequencing is by events (the stand-in's journal, the stream's chunks), never by timing
assertions: ``delay`` / ``slow`` only keep the stand-in busy while the test cancels."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import anyio
import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from meter_fixtures import close_aio_sessions

import qwen_meter as qm
from qwen_meter.meter.log import JsonlLog

KEY = "sk-test-ledger-0123456789"
HELLO = [{"role": "user", "content": "你好，你是谁？"}]
HOLD = 1.5  # seconds the stand-in keeps an answer back (never asserted on)


def records(meter: qm.Meter) -> list[qm.UsageRecord]:
    assert isinstance(meter.log, JsonlLog)
    return list(JsonlLog(meter.log.path))


async def billed(server: Any, n: int) -> None:
    """Wait until the stand-in has billed ``n`` requests (the request left and was taken)."""
    while len(server.billed) < n:
        await asyncio.sleep(0.005)


def assert_ledger(meter: qm.Meter, server: Any) -> list[qm.UsageRecord]:
    """One record per billed call; the budget committed exactly the records' costs; no hold
    left; the limiter holds each record's tokens."""
    recs = records(meter)
    charged = [r for r in recs if r.status not in ("error", "refused")]
    assert len(charged) == len(server.billed), [r.status for r in recs]
    status = meter.budgets[0].status()
    assert status.reserved == 0
    assert status.committed == sum((Decimal(r.cost or 0) for r in charged), Decimal(0))
    if meter.limiter is not None:
        assert meter.limiter.usage("qwen-plus") == (  # failed calls released their slot
            len(charged), sum(r.total_tokens for r in charged))
    return recs


@pytest.fixture
def metered(make_meter: Any, server: Any) -> Any:
    server.billed.clear()
    meter = make_meter(budget=qm.Budget("10 CNY"),
                       limiter=qm.RateLimiter(limits={"qwen-plus": (1000, 10_000_000)}))
    client = meter.wrap(openai.AsyncOpenAI(api_key=KEY, base_url=server.compatible,
                                           max_retries=0))
    return meter, client


def _cancelled_record(rec: qm.UsageRecord, status: str = "cancelled") -> None:
    assert rec.status == status
    assert rec.usage_estimated
    assert rec.prompt_tokens > 0 and rec.cost is not None and Decimal(rec.cost) > 0
    assert rec.error and rec.error_kind


def test_cancel_waiting_for_the_answer_head(metered, server):
    meter, client = metered
    server.push({"delay": HOLD})

    async def main() -> None:
        task = asyncio.ensure_future(client.chat.completions.create(
            model="qwen-plus", messages=HELLO))
        await billed(server, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    [rec] = assert_ledger(meter, server)
    _cancelled_record(rec)
    assert rec.error_kind == "CancelledError"


def test_wait_for_timeout_while_waiting_for_the_head(metered, server):
    meter, client = metered
    server.push({"delay": HOLD})

    async def main() -> None:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.chat.completions.create(
                model="qwen-plus", messages=HELLO), 0.3)

    asyncio.run(main())
    [rec] = assert_ledger(meter, server)
    _cancelled_record(rec)


def test_anyio_cancel_scope_at_the_head(metered, server):
    """anyio cancels again at every await inside a cancelled scope: settlement must still
    run to its end."""
    meter, client = metered
    server.push({"delay": HOLD})

    async def main() -> None:
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as tg:
                async def cancel_when_billed() -> None:
                    await billed(server, 1)
                    scope.cancel()

                tg.start_soon(cancel_when_billed)
                await client.chat.completions.create(model="qwen-plus", messages=HELLO)
        assert scope.cancelled_caught

    anyio.run(main)
    [rec] = assert_ledger(meter, server)
    _cancelled_record(rec)


@pytest.mark.parametrize("runner", ["asyncio", "anyio"])
def test_cancel_mid_stream(metered, server, runner):
    meter, client = metered
    server.push({"slow": HOLD})  # a chunk, then a long pause

    async def consume(seen: asyncio.Event | anyio.Event) -> None:
        stream = await client.chat.completions.create(model="qwen-plus", messages=HELLO,
                                                      stream=True)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                seen.set()

    async def with_asyncio() -> None:
        seen = asyncio.Event()
        task = asyncio.ensure_future(consume(seen))
        await seen.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    async def with_anyio() -> None:
        seen = anyio.Event()
        async with anyio.create_task_group() as tg:
            tg.start_soon(consume, seen)
            await seen.wait()
            tg.cancel_scope.cancel()

    if runner == "asyncio":
        asyncio.run(with_asyncio())
    else:
        anyio.run(with_anyio)
    [rec] = assert_ledger(meter, server)
    _cancelled_record(rec)
    assert rec.completion_tokens > 0  # the reply seen so far was counted


def test_cancel_while_waiting_for_the_limiter(make_meter, server):
    """Nothing was sent: the holds are released, no call is recorded, nothing billed."""
    server.billed.clear()
    meter = make_meter(budget=qm.Budget("10 CNY"),
                       limiter=qm.RateLimiter(limits={"qwen-plus": (1, 10_000_000)}))
    client = meter.wrap(openai.AsyncOpenAI(api_key=KEY, base_url=server.compatible,
                                           max_retries=0))

    async def main() -> None:
        await client.chat.completions.create(model="qwen-plus", messages=HELLO)
        task = asyncio.ensure_future(client.chat.completions.create(
            model="qwen-plus", messages=HELLO))
        while meter.budgets[0].status().reserved == 0:  # the second call holds, then waits
            await asyncio.sleep(0.005)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())
    recs = assert_ledger(meter, server)
    assert [r.status for r in recs] == ["ok"]


def test_read_timeouts_with_the_clients_own_retries(metered, server):
    """The openai SDK retries a read timeout itself: each attempt was billed upstream, and
    each is its own ``unknown`` record, charged at its estimate."""
    meter, _ = metered
    client = meter.wrap(openai.AsyncOpenAI(api_key=KEY, base_url=server.compatible,
                                           max_retries=2, timeout=0.3))
    server.push(*[{"delay": HOLD}] * 3)

    async def main() -> None:
        with pytest.raises(openai.APITimeoutError):
            await client.chat.completions.create(model="qwen-plus", messages=HELLO)

    asyncio.run(main())
    recs = assert_ledger(meter, server)
    assert len(recs) == len(server.billed) == 3
    for rec in recs:
        _cancelled_record(rec, "unknown")
        assert rec.error_kind == "ReadTimeout"


def test_sync_read_timeout_is_charged(make_meter, server):
    server.billed.clear()
    meter = make_meter(budget=qm.Budget("10 CNY"))
    client = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible, max_retries=0,
                                      timeout=0.3))
    server.push({"delay": HOLD})
    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="qwen-plus", messages=HELLO)
    [rec] = assert_ledger(meter, server)
    _cancelled_record(rec, "unknown")


def test_connect_error_is_not_billed(make_meter):
    """Before the request left (nothing listens): released, recorded as an error at no cost."""
    from redis_server import free_port

    meter = make_meter(budget=qm.Budget("10 CNY"))
    client = meter.wrap(openai.AsyncOpenAI(api_key=KEY, max_retries=0,
                                           base_url=f"http://127.0.0.1:{free_port()}/v1"))

    async def main() -> None:
        with pytest.raises(openai.APIConnectionError):
            await client.chat.completions.create(model="qwen-plus", messages=HELLO)

    asyncio.run(main())
    [rec] = records(meter)
    assert rec.status == "error" and rec.cost is None and rec.error_kind == "ConnectError"
    status = meter.budgets[0].status()
    assert status.committed == 0 and status.reserved == 0


def test_keyboard_interrupt_while_waiting_is_charged(make_meter, server):
    """Sync: Ctrl-C (any BaseException) after sending settles the call as cancelled."""
    server.billed.clear()
    meter = make_meter(budget=qm.Budget("10 CNY"))

    class Interrupting(httpx.BaseTransport):
        def __init__(self) -> None:
            self.inner = httpx.HTTPTransport()

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            self.inner.handle_request(request).close()  # billed upstream
            raise KeyboardInterrupt

    client = meter.wrap(httpx.Client(transport=Interrupting()))
    with pytest.raises(KeyboardInterrupt):
        client.post(server.compatible + "/chat/completions",
                    json={"model": "qwen-plus", "messages": HELLO})
    [rec] = assert_ledger(meter, server)
    _cancelled_record(rec)
    assert rec.error_kind == "KeyboardInterrupt"


# --- the dashscope SDK ------------------------------------------------------------------------

@pytest.fixture
def dashscope_sdk(server):
    dashscope = pytest.importorskip("dashscope")
    previous = dashscope.base_http_api_url
    dashscope.base_http_api_url = server.native
    yield dashscope
    dashscope.base_http_api_url = previous


def test_dashscope_async_cancel_at_head(make_meter, server, dashscope_sdk):
    server.billed.clear()
    meter = make_meter(budget=qm.Budget("10 CNY"))
    generation = meter.wrap(dashscope_sdk.AioGeneration)
    server.push({"delay": HOLD})

    async def main() -> None:
        task = asyncio.ensure_future(generation.call(model="qwen-plus", messages=HELLO,
                                                     api_key=KEY, result_format="message"))
        await billed(server, 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await close_aio_sessions(dashscope_sdk)

    asyncio.run(main())
    [rec] = assert_ledger(meter, server)
    _cancelled_record(rec)


def test_dashscope_async_cancel_mid_stream(make_meter, server, dashscope_sdk):
    server.billed.clear()
    meter = make_meter(budget=qm.Budget("10 CNY"))
    generation = meter.wrap(dashscope_sdk.AioGeneration)
    server.push({"slow": HOLD})

    async def main() -> None:
        seen = asyncio.Event()

        async def consume() -> None:
            stream = await generation.call(model="qwen-plus", messages=HELLO, api_key=KEY,
                                           result_format="message", stream=True,
                                           incremental_output=True)
            async for _ in stream:
                seen.set()

        task = asyncio.ensure_future(consume())
        await seen.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await close_aio_sessions(dashscope_sdk)

    asyncio.run(main())
    [rec] = assert_ledger(meter, server)
    _cancelled_record(rec)
    assert rec.completion_tokens > 0  # the cumulative usage so far


# --- streams dropped unfinished -----------------------------------------------------------------

def test_stream_closed_with_async_with_settles_at_once(metered, server):
    meter, client = metered
    server.push({"slow": 0.05})  # still streaming when the block is left

    async def main() -> None:
        stream = await client.chat.completions.create(model="qwen-plus", messages=HELLO,
                                                      stream=True)
        async with stream:
            async for _ in stream:
                break
        [rec] = records(meter)  # settled on leaving the block, not at collection
        assert rec.status == "closed"

    asyncio.run(main())
    assert_ledger(meter, server)


def test_stream_dropped_in_a_cycle_settles_at_meter_close(metered, server):
    """The openai SDK's stream is a reference cycle: dropped unfinished, it is freed only by
    the garbage collector. The meter's close settles it anyway."""
    import gc

    meter, client = metered
    gc.disable()
    try:
        async def main() -> None:
            stream = await client.chat.completions.create(model="qwen-plus", messages=HELLO,
                                                          stream=True)
            async for _ in stream:
                break
            del stream
            await asyncio.sleep(0)
            # not settled yet: the stream is still in memory (its journal intent is pending)
            assert [r.status for r in records(meter)] == ["pending"]
            meter.close()

        server.push({"slow": 0.05})
        asyncio.run(main())
    finally:
        gc.enable()
    [rec] = assert_ledger(meter, server)
    assert rec.status == "closed" and rec.usage_estimated


def test_stream_freed_without_its_loop_settles_at_the_next_call(make_meter, server,
                                                                dashscope_sdk):
    """A dashscope stream dropped after its event loop ended cannot run its own close: the
    meter's next call settles it."""
    server.billed.clear()
    meter = make_meter(budget=qm.Budget("10 CNY"))
    generation = meter.wrap(dashscope_sdk.AioGeneration)

    async def start() -> Any:
        stream = await generation.call(model="qwen-plus", messages=HELLO, api_key=KEY,
                                       result_format="message", stream=True,
                                       incremental_output=True)
        await anext(stream)
        return stream

    loop = asyncio.new_event_loop()
    stream = loop.run_until_complete(start())
    loop.run_until_complete(close_aio_sessions(dashscope_sdk))
    loop.close()
    del stream  # its finaliser has no loop to run on
    import gc

    gc.collect()
    assert [r.status for r in records(meter)] == ["pending"]  # only the journal's intent
    call = meter.begin({"model": "qwen-plus", "messages": HELLO})
    # the dropped stream settled; the new call is in flight (its intent)
    assert [r.status for r in records(meter)] == ["closed", "pending"]
    call.finish({"prompt_tokens": 22, "completion_tokens": 16})
    recs = records(meter)
    status = meter.budgets[0].status()
    assert status.reserved == 0
    assert status.committed == sum(Decimal(r.cost) for r in recs)


# --- random interleavings -----------------------------------------------------------------------

ACTIONS = ("normal", "stream", "cancel_head", "cancel_stream", "timeout", "connect_error")


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from(ACTIONS), min_size=1, max_size=4))
def test_random_interleavings_keep_the_ledger(server, tmp_path_factory, actions):
    """Whatever sequence of normal calls, cancellations, timeouts and connection failures
    runs: one record per billed call, every hold settled once, the budget committed
    exactly the records' costs."""
    from redis_server import free_port

    server.behaviours.clear()
    server.billed.clear()
    path = tmp_path_factory.mktemp("ledger") / "usage.jsonl"
    meter = qm.Meter(log=path, budget=qm.Budget("10 CNY"),
                     limiter=qm.RateLimiter(limits={"qwen-plus": (1000, 10_000_000)}),
                     retry=qm.RetryPolicy(max_retries=0))
    dead = f"http://127.0.0.1:{free_port()}/v1"

    def client(**options: Any) -> Any:
        options.setdefault("base_url", server.compatible)
        return meter.wrap(openai.AsyncOpenAI(api_key=KEY, max_retries=0, **options))

    async def one(action: str) -> None:
        if action == "connect_error":
            with pytest.raises(openai.APIConnectionError):
                await client(base_url=dead).chat.completions.create(model="qwen-plus",
                                                                    messages=HELLO)
        elif action == "timeout":
            with pytest.raises(openai.APITimeoutError):
                await client(timeout=0.2).chat.completions.create(
                    model="qwen-plus", messages=HELLO)
        elif action in ("normal", "stream"):
            stream = action == "stream"
            reply = await client().chat.completions.create(model="qwen-plus", messages=HELLO,
                                                           stream=stream)
            if stream:
                async for _ in reply:
                    pass
        else:
            before = len(server.billed)
            seen = asyncio.Event()

            async def run() -> None:
                reply = await client().chat.completions.create(
                    model="qwen-plus", messages=HELLO, stream=action == "cancel_stream")
                async for _ in reply:
                    seen.set()

            task = asyncio.ensure_future(run())
            if action == "cancel_head":
                await billed(server, before + 1)
            else:
                await seen.wait()
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    async def main() -> None:
        for action in actions:  # one after another: each its own behaviour
            if action in ("timeout", "cancel_head"):
                server.push({"delay": 0.6})
            elif action == "cancel_stream":
                server.push({"slow": 0.6})
            await one(action)

    asyncio.run(main())
    try:
        recs = assert_ledger(meter, server)
        assert len(recs) == len(actions)
    finally:
        meter.close()
