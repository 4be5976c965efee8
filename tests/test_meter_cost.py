"""The meter's own work per call, checked by what it does rather than how long it takes
(timings are in benchmarks/bench_meter.py): an asyncio settlement on the in-memory stores and a
JSONL log runs in the caller's task, with no thread hop, while an ``fsync`` log still has the
line on disk when the call returns; each thing is computed once per call; log lines have the
same bytes whether or not ``orjson`` encodes them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from decimal import Decimal
from typing import Any

import pytest

import qwen_meter as qm
from qwen_meter.billing import usage as usage_module
from qwen_meter.meter import jsonline, plan
from qwen_meter.meter.journal import intent_line
from qwen_meter.meter.log import JsonlLog, UsageRecord, read_jsonl
from qwen_meter.meter.records import _FIELD_NAMES

HELLO = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "你是誰?"}]
USAGE = {"prompt_tokens": 22, "completion_tokens": 16, "total_tokens": 38}


class Where(qm.Observer):
    """Notes the task and thread each record is announced from."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, str]] = []

    def on_record(self, record: UsageRecord, call: Any) -> None:
        try:
            task = asyncio.current_task()
        except RuntimeError:
            task = None
        self.seen.append((task, threading.current_thread().name))


class WatchedLog(JsonlLog):
    """A JSONL log noting the thread each line is written from."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.threads: list[str] = []

    def _write(self, lines: list[bytes]) -> None:
        self.threads.extend(threading.current_thread().name for _ in lines)
        super()._write(lines)


def _meter(log: Any, observer: Where) -> qm.Meter:
    return qm.Meter(log=log, budget=qm.Budget("100 CNY"),
                    limiter=qm.RateLimiter(limits={"qwen-plus": (10**6, 10**9)}),
                    observers=[observer])


def test_async_settlement_on_memory_stores_and_a_jsonl_log_stays_in_the_callers_task(tmp_path):
    watched = WatchedLog(tmp_path / "usage.jsonl")
    where = Where()
    meter = _meter(watched, where)
    tasks: list[Any] = []

    async def main() -> None:
        tasks.append(asyncio.current_task())
        for _ in range(3):
            call = await meter.begin_async({"model": "qwen-plus", "messages": HELLO})
            await call.finish_async(USAGE)

    asyncio.run(main())
    main_thread = threading.main_thread().name
    # No task to shield it, no worker thread for the log: the settlement ran in place.
    assert where.seen == [(tasks[0], main_thread)] * 3
    assert watched.threads == [main_thread] * 6  # an intent and a record per call
    records = list(read_jsonl(tmp_path / "usage.jsonl"))
    assert [r.cost for r in records] == ["0.0000496"] * 3
    assert meter.budgets[0].status().committed == Decimal("0.0001488")
    meter.close()


def test_async_fsync_log_has_the_line_on_disk_when_the_call_returns(tmp_path):
    """An fsync log's write goes to its writer thread (fsync must not block the loop); the
    call still returns only once its record is written."""
    watched = WatchedLog(tmp_path / "usage.jsonl", durability="fsync")
    where = Where()
    meter = _meter(watched, where)
    on_disk: list[int] = []

    async def main() -> None:
        for _ in range(2):
            call = await meter.begin_async({"model": "qwen-plus", "messages": HELLO})
            await call.finish_async(USAGE)
            on_disk.append(len((tmp_path / "usage.jsonl").read_bytes().splitlines()))

    asyncio.run(main())
    assert on_disk == [2, 4]
    assert watched.threads and threading.main_thread().name not in watched.threads
    meter.close()


def test_async_cancelled_during_an_inline_settlement_still_records(tmp_path):
    """A caller cancelled while its settlement runs inline gets the record written first."""
    meter = _meter(tmp_path / "usage.jsonl", Where())

    async def main() -> None:
        call = await meter.begin_async({"model": "qwen-plus", "messages": HELLO})
        task = asyncio.ensure_future(call.finish_async(USAGE))
        await asyncio.sleep(0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        assert call.settled and call.record is not None

    asyncio.run(main())
    meter.close()
    records = list(read_jsonl(tmp_path / "usage.jsonl"))
    assert [r.status for r in records] == ["ok"]


def test_each_thing_is_computed_once_per_call(tmp_path, monkeypatch):
    counts = {"plan": 0, "parse": 0, "to_dict": 0}
    make_plan, parse, to_dict = plan.make_plan, usage_module.Usage.parse, UsageRecord.to_dict

    def counted(name: str, fn: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            counts[name] += 1
            return fn(*args, **kwargs)
        return wrapper

    monkeypatch.setattr("qwen_meter.meter.pipeline.make_plan", counted("plan", make_plan))
    monkeypatch.setattr(usage_module.Usage, "parse",
                        staticmethod(counted("parse", parse)))
    monkeypatch.setattr(UsageRecord, "to_dict", counted("to_dict", to_dict))
    meter = _meter(tmp_path / "usage.jsonl", Where())
    for _ in range(4):
        meter.begin({"model": "qwen-plus", "messages": HELLO}).finish(USAGE)
    meter.close()
    # One plan, one parse of the usage, one serialisation of the record per call.
    assert counts == {"plan": 4, "parse": 4, "to_dict": 4}


def test_the_meters_records_are_the_records_init_builds(tmp_path):
    meter = _meter(tmp_path / "usage.jsonl", Where())
    call = meter.begin({"model": "qwen-plus", "messages": HELLO}, tags=["team=a"])
    record = call.finish(USAGE, request_id="r-1")
    meter.close()
    fields = {name: getattr(record, name) for name in _FIELD_NAMES}
    assert tuple(record.__dict__) == _FIELD_NAMES
    assert record == UsageRecord(**fields)
    assert UsageRecord(**fields).to_line() == record.to_line()
    assert list(read_jsonl(tmp_path / "usage.jsonl")) == [record]


EDGES: list[dict[str, Any]] = [
    {"latency_ms": 12.345, "metadata": {"k": "v"}, "tags": ("a", "b")},
    {"latency_ms": 1e-05},           # the stdlib writes 1e-05, orjson 0.00001
    {"latency_ms": 2.5e16},
    {"latency_ms": float("nan")},    # NaN (stdlib) against null (orjson)
    {"latency_ms": 0.0, "prompt_tokens": 2**70},  # beyond orjson's 64 bits
    {"metadata": {"n": 1.5e-07, "k": "v"}},       # not what Meter makes, but a user might
    {"error": "引号 \" \\ \x00 \x1f \x7f \u2028 é", "warnings": ("w\n",)},
]


@pytest.mark.parametrize("fields", EDGES)
def test_lines_have_the_same_bytes_with_or_without_orjson(fields, monkeypatch):
    record = UsageRecord(model="qwen-plus", **fields)
    intent = {"journal": "intent", "id": "x", "holds": [{"expire_at": 1765150000.123456}],
              **{k: (list(v) if isinstance(v, tuple) else v) for k, v in fields.items()}}
    produced = (record.to_line(), record.to_json(), intent_line(intent))
    monkeypatch.setattr(jsonline, "_fast", None)  # the standard library alone
    expected = (record.to_line(), record.to_json(), intent_line(intent))
    assert produced == expected
    assert expected[0] == (json.dumps(record.to_dict(), ensure_ascii=False,
                                      separators=(",", ":")) + "\n").encode()


def test_a_lone_surrogate_fails_the_same_either_way(monkeypatch):
    record = UsageRecord(model="qwen-plus", user="\udc80")
    with pytest.raises(UnicodeEncodeError):
        record.to_line()
    monkeypatch.setattr(jsonline, "_fast", None)
    with pytest.raises(UnicodeEncodeError):
        record.to_line()
