"""The usage log's write-ahead journal: an intent before a request leaves, one record per call,
recovery of a dead process's calls (status lost) with their holds settled once."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any
from unittest import mock

import httpx
import openai
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter.limits.store import MemoryStore
from qwen_meter.meter import journal
from qwen_meter.meter.recovery import recover
from qwen_meter.meter.sinks import JsonlLog
from qwen_meter.meter.sqlite_log import SQLiteLog

KEY = "sk-journalTESTkey0123456789"
HELLO = [{"role": "user", "content": "hello"}]
REQUEST = {"model": "qwen-plus", "messages": HELLO, "max_tokens": 40}
ROOT = Path(__file__).resolve().parent.parent


def log_path(folder: Path, kind: str) -> Path:
    return folder / ("usage.jsonl" if kind == "jsonl" else "usage.db")


def dead_identity() -> dict[str, Any]:
    """A writer on this host whose process has exited."""
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return {"host": journal.writer_identity()["host"], "pid": int(done.stdout),
            "start": "a process that is gone"}


@contextmanager
def doomed_process() -> Iterator[None]:
    """Meters made inside write intents as a process that then dies (its pid is gone)."""
    with mock.patch.object(journal, "writer_identity", return_value=dead_identity()):
        yield


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_the_intent_is_in_the_log_before_the_request_leaves(server, tmp_path, kind):
    path = log_path(tmp_path, kind)
    inner = server.transport()
    seen: list[list[tuple[str, str]]] = []

    class Spy(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            seen.append([(r.id, r.status) for r in qm.read_usage(path)])  # another reader
            return inner.handle_request(request)

    meter = qm.Meter(log=path)
    client = meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible,
                                      http_client=httpx.Client(transport=Spy())))
    client.chat.completions.create(**REQUEST)
    (record,) = qm.read_usage(path)
    assert seen == [[(record.id, "pending")]]  # the intent, read while the request is out
    assert record.status == "ok" and not record.usage_estimated
    if kind == "jsonl":  # two lines on disk (intent, outcome), one record read back
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        assert [line.get("journal") for line in lines] == ["intent", None]
        assert lines[0]["id"] == lines[1]["id"] == record.id
        assert lines[0]["holds"] == [] and lines[0]["writer"]["pid"] == os.getpid()
    meter.close()


def test_async_intent_before_send_written_on_the_loop(server, tmp_path):
    """The flush log writes on the event loop's thread (no hand-off per call), and the intent
    is in the file before the request leaves."""
    path = tmp_path / "usage.jsonl"
    inner = server.transport(asynchronous=True)
    seen: list[list[str]] = []
    writers: set[int] = set()

    class Spy(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            seen.append([r.status for r in qm.read_usage(path)])
            return await inner.handle_async_request(request)

    meter = qm.Meter(log=path, budget=qm.Budget("5 CNY"))
    write = meter.log._write  # type: ignore[union-attr]

    def spy_write(lines: list[bytes]) -> None:
        writers.add(threading.get_ident())
        write(lines)

    meter.log._write = spy_write  # type: ignore[union-attr]
    client = meter.wrap(openai.AsyncOpenAI(api_key=KEY, base_url=server.compatible,
                                           http_client=httpx.AsyncClient(transport=Spy())))

    async def main() -> int:
        await client.chat.completions.create(**REQUEST)
        return threading.get_ident()

    loop_thread = asyncio.run(main())
    assert seen == [["pending"]]
    assert writers == {loop_thread}
    (record,) = qm.read_usage(path)
    assert record.status == "ok"
    meter.close()


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_a_dead_process_calls_are_settled_lost_and_their_holds_committed(
        server, tmp_path, redis_url, kind):
    path = log_path(tmp_path, kind)
    store = qm.open_store(redis_url)
    name = f"journal-{uuid.uuid4().hex[:8]}"

    def budget() -> qm.Budget:
        return qm.Budget("5 CNY", name=name, store=store)

    def limiter() -> qm.RateLimiter:
        return qm.RateLimiter(store, account=name, limits={"qwen-plus": (100, 100_000)})

    with doomed_process():
        dead = qm.Meter(log=path, budget=budget(), limiter=limiter())
        call = dead.begin(REQUEST)
        # It is sent — the server bills it — and the process dies before settling.
        httpx.post(f"{server.compatible}/chat/completions", json=REQUEST, timeout=10)
    held = budget().status()
    assert held.reserved == call.estimate.high.amount and held.committed == 0
    assert [r.status for r in qm.read_usage(path)] == ["pending"]

    qm.Meter(log=path, budget=budget(), limiter=limiter())  # the restart
    (record,) = qm.read_usage(path)
    assert (record.id, record.status, record.usage_estimated) == (call.id, "lost", True)
    assert Decimal(record.cost) == call.estimate.high.amount and record.currency == "CNY"
    assert record.total_tokens == call.tokens_reserved
    after = budget().status()
    assert after.reserved == 0 and after.committed == Decimal(record.cost)
    assert limiter().usage("qwen-plus") == (1, call.tokens_reserved)

    qm.Meter(log=path, budget=budget(), limiter=limiter())  # and again: nothing changes
    assert qm.read_usage(path) == [record]
    assert budget().status() == after
    dead.close()


def test_a_live_process_calls_are_left_to_it(tmp_path):
    path = tmp_path / "usage.jsonl"
    store = MemoryStore()
    live = qm.Meter(log=path, budget=qm.Budget("5 CNY", store=store))
    call = live.begin(REQUEST)
    qm.Meter(log=path, budget=qm.Budget("5 CNY", store=store))  # another meter, same process
    assert [r.status for r in qm.read_usage(path)] == ["pending"]
    call.finish({"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12})
    (record,) = qm.read_usage(path)
    assert (record.id, record.status, record.cost is not None) == (call.id, "ok", True)
    assert qm.Budget("5 CNY", store=store).status().reserved == 0


def test_another_hosts_intents_wait_for_max_age(tmp_path):
    path = tmp_path / "usage.jsonl"
    elsewhere = {"host": "another-host.example", "pid": 1, "start": None}
    with mock.patch.object(journal, "writer_identity", return_value=elsewhere):
        meter = qm.Meter(log=path, budget=qm.Budget("5 CNY"))
        meter.begin(REQUEST)
    log = JsonlLog(path)
    assert recover(log) == []  # younger than the lease: it may still be running there
    (lost,) = recover(log, max_age=0)
    assert lost.status == "lost"
    assert "not configured here" in lost.warnings[1] and lost.degraded
    assert [r.status for r in qm.read_usage(path)] == ["lost"]


# What a restarting meter does (Meter(log=, budget=) runs recover), with everything built
# before the start signal, so the two processes really race.
RECOVER = """
import os, sys, pathlib
import qwen_meter as qm
from qwen_meter.meter.log import open_log
from qwen_meter.meter.recovery import recover
path, store, name, go = sys.argv[1:5]
log = open_log(path)
budget = qm.Budget("50 CNY", name=name, store=store)
budget.status()
while not pathlib.Path(go).exists():
    os.sched_yield()
recover(log, budgets=[budget])
log.close()
"""


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_two_processes_restarting_at_once_settle_each_intent_once(tmp_path, redis_url, kind):
    path = log_path(tmp_path, kind)
    name = f"twice-{uuid.uuid4().hex[:8]}"
    store = qm.open_store(redis_url)
    with doomed_process():
        dead = qm.Meter(log=path, budget=qm.Budget("50 CNY", name=name, store=store))
        calls = [dead.begin(REQUEST) for _ in range(60)]
    go = tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", RECOVER, str(path), redis_url, name,
                               str(go)], env=env) for _ in range(2)]
    time.sleep(1.0)  # both ready and spinning (not an assertion on time)
    go.touch()
    assert [p.wait(60) for p in procs] == [0, 0]
    records = qm.read_usage(path)
    assert sorted(r.id for r in records) == sorted(c.id for c in calls)
    assert {r.status for r in records} == {"lost"}
    if kind == "jsonl":  # one outcome line per intent on disk, not just after folding
        outcomes = [json.loads(line)["id"] for line in path.read_text().splitlines()
                    if not line.startswith('{"journal"')]
        assert sorted(outcomes) == sorted(c.id for c in calls)
    status = qm.Budget("50 CNY", name=name, store=store).status()
    assert status.reserved == 0
    assert status.committed == sum(Decimal(r.cost) for r in records)
    dead.close()


USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(plan=st.lists(st.tuples(st.sampled_from(["intent", "sent", "settled"]),
                               st.sampled_from(["go on", "crash", "crash, two restarts"])),
                     min_size=1, max_size=8),
       kind=st.sampled_from(["jsonl", "sqlite"]))
def test_any_crash_points_keep_one_record_per_call_and_one_settlement_per_hold(plan, kind):
    """Each call stops at a point (after its intent, after the server billed it, after it
    settled); a process may crash after it, and one or two new processes start on the log."""
    store = MemoryStore()

    def meter() -> qm.Meter:
        return qm.Meter(log=path, budget=qm.Budget("100 CNY", store=store),
                        limiter=qm.RateLimiter(store, limits={"qwen-plus": (1000, 10**7)}))

    with tempfile.TemporaryDirectory() as folder:
        path = log_path(Path(folder), kind)
        expected: dict[str, str] = {}
        billed = 0
        opened: list[qm.Meter] = []
        patch = mock.patch.object(journal, "writer_identity", return_value=dead_identity())
        patch.start()
        try:
            opened.append(meter())
            for point, then in plan:
                call = opened[-1].begin(REQUEST)
                billed += point != "intent"
                if point == "settled":
                    call.finish(USAGE)
                    expected[call.id] = "ok"
                else:
                    expected[call.id] = "lost" if then != "go on" else "pending"
                if then != "go on":  # the process dies; a new one (or two) start
                    patch.stop()
                    patch = mock.patch.object(journal, "writer_identity",
                                              return_value=dead_identity())
                    patch.start()
                    opened += [meter() for _ in range(1 + then.endswith("two restarts"))]
                    expected = {k: "lost" if v == "pending" else v for k, v in expected.items()}
        finally:
            patch.stop()
        opened.append(meter())  # the last process died too: a final restart settles all
        records = qm.read_usage(path)
        for m in opened:
            m.close()
    assert {r.id: r.status for r in records} == {k: "lost" if v == "pending" else v
                                                 for k, v in expected.items()}
    assert len(records) == len(plan) >= billed
    status = qm.Budget("100 CNY", store=store).status()
    assert status.reserved == 0
    assert status.committed == sum(Decimal(r.cost) for r in records)
    limiter = qm.RateLimiter(store, limits={"qwen-plus": (1000, 10**7)})
    assert limiter.usage("qwen-plus") == (len(plan), sum(r.total_tokens for r in records))


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
@pytest.mark.parametrize("durability", ["buffered", "flush", "fsync"])
def test_every_durability_loses_nothing_on_close(tmp_path, kind, durability):
    path = log_path(tmp_path, kind)
    log = JsonlLog(path, durability=durability) if kind == "jsonl" else \
        SQLiteLog(path, durability=durability)
    meter = qm.Meter(log=log, budget=qm.Budget("5 CNY"))

    async def calls() -> None:
        async def one() -> None:
            call = await meter.begin_async(REQUEST)
            await call.finish_async(USAGE)

        await asyncio.gather(*(one() for _ in range(40)))

    asyncio.run(calls())
    for _ in range(10):
        meter.begin(REQUEST).finish(USAGE)
    meter.close()
    records = qm.read_usage(path)
    assert len(records) == 50 and {r.status for r in records} == {"ok"}


@pytest.mark.parametrize("durability", ["fsync", "sqlite"])
def test_durable_async_writes_leave_the_loop_and_are_awaited(tmp_path, durability):
    """fsync (and every SQLite write) under asyncio: written by the log's thread, and on disk
    when the await returns."""
    if durability == "sqlite":
        log: Any = SQLiteLog(tmp_path / "usage.db")
    else:
        log = JsonlLog(tmp_path / "usage.jsonl", durability="fsync")
    threads: set[int] = set()
    write = log._write

    def spy(items: list[Any]) -> None:
        threads.add(threading.get_ident())
        write(items)

    log._write = spy

    async def main() -> tuple[int, list[str]]:
        await log.append_async(qm.UsageRecord(model="qwen-plus", id="one"))
        return threading.get_ident(), [r.id for r in qm.read_usage(log.path)]

    loop_thread, seen = asyncio.run(main())
    assert seen == ["one"] and loop_thread not in threads and threads
    log.close()


def test_reports_count_a_journaled_call_once(tmp_path):
    pytest.importorskip("duckdb")
    from qwen_meter.report.read import load_usage

    path = tmp_path / "usage.jsonl"
    meter = qm.Meter(log=path, budget=qm.Budget("5 CNY"))
    for _ in range(3):
        meter.begin(REQUEST).finish(USAGE)
    meter.close()
    assert len(path.read_text().splitlines()) == 6
    assert len(load_usage(path)) == 3
