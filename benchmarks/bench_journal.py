"""The journal's cost per call: the meter's pipeline with the write-ahead journal, beside 0.2's
meter (no journal: one record per call, written in a worker thread under asyncio).

Run:  python benchmarks/bench_journal.py [--calls 300] [--rounds 7]

The pipeline alone (``begin`` + ``finish``, no HTTP), with a budget and a limiter on the memory
store, a short chat per call, sync and async, for each log:

* ``0.2 (no journal)`` — one append per call; async through ``asyncio.to_thread`` (0.2's way);
* ``journal flush`` — intent + outcome, one ``write(2)`` each (async: on the loop, inline);
* ``journal buffered`` — intent + outcome handed to the log's writer thread, not awaited;
* ``journal fsync`` — intent + outcome each ``fsync``\\ ed (async: the writer thread, awaited);
* the same for SQLite (``flush`` = ``synchronous=NORMAL``; async: the writer thread, awaited).

Also the hand-offs alone: ``await asyncio.to_thread(noop)`` and a write handed to a writer
thread and awaited, next to one inline ``O_APPEND`` write of a 900-byte line.

Rows are measured in interleaved rounds (every variant once per round, in turn); each figure
is the median over rounds of each round's median µs per call. Compare columns of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench_meter import atimed, timed  # one median timer for every benchmark

import qwen_meter as qm
from qwen_meter.limits.store import MemoryStore
from qwen_meter.meter.logbase import UsageLog
from qwen_meter.meter.sinks import JsonlLog
from qwen_meter.meter.sqlite_log import SQLiteLog
from qwen_meter.meter.writer import BackgroundWriter

REQUEST = {"model": "qwen-plus", "messages": [
    {"role": "system", "content": "You are a helpful assistant."},
    {"role": "user", "content": "你是誰?"}]}
USAGE = {"prompt_tokens": 22, "completion_tokens": 16, "total_tokens": 38}


class Log02(UsageLog):
    """0.2's log: one record per call, no intent, no async method (the meter then writes
    it with ``asyncio.to_thread``)."""

    def __init__(self, inner: UsageLog) -> None:
        self.inner = inner

    def append(self, record: qm.UsageRecord) -> None:
        self.inner.append(record)

    def __iter__(self) -> Iterator[qm.UsageRecord]:
        return iter(self.inner)

    def close(self) -> None:
        self.inner.close()


def logs(folder: Path) -> dict[str, Callable[[], UsageLog]]:
    def path(name: str) -> Path:
        return folder / name

    return {
        "jsonl 0.2 (no journal)": lambda: Log02(JsonlLog(path("a.jsonl"))),
        "jsonl journal flush": lambda: JsonlLog(path("b.jsonl")),
        "jsonl journal buffered": lambda: JsonlLog(path("c.jsonl"), durability="buffered"),
        "jsonl journal fsync": lambda: JsonlLog(path("d.jsonl"), durability="fsync"),
        "sqlite 0.2 (no journal)": lambda: Log02(SQLiteLog(path("e.db"))),
        "sqlite journal flush": lambda: SQLiteLog(path("f.db")),
        "sqlite journal buffered": lambda: SQLiteLog(path("g.db"), durability="buffered"),
    }


def meter_with(log: UsageLog) -> qm.Meter:
    store = MemoryStore()
    return qm.Meter(log=log, budget=qm.Budget("1000000 CNY", store=store),
                    limiter=qm.RateLimiter(store, limits={"qwen-plus": (10**9, 10**12)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        meters = {name: meter_with(make()) for name, make in logs(folder).items()}
        results: dict[tuple[str, str], list[float]] = {}
        line = b"x" * 899 + b"\n"
        fd = os.open(folder / "raw.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        writer: BackgroundWriter[bytes] = BackgroundWriter(lambda batch: None, bytes.decode,
                                                           "bench")

        def sync_call(meter: qm.Meter) -> Callable[[], Any]:
            return lambda: meter.begin(REQUEST).finish(USAGE)

        async def async_call(meter: qm.Meter) -> None:
            call = await meter.begin_async(REQUEST)
            await call.finish_async(USAGE)

        async def handed_off() -> None:
            future = writer.submit(line, wait=True)
            assert future is not None
            await asyncio.wrap_future(future)

        async def async_round(n: int) -> None:
            for name, meter in meters.items():
                results.setdefault(("async", name), []).append(
                    await atimed(lambda m=meter: async_call(m), n))
            results.setdefault(("async", "hand-off: asyncio.to_thread(noop)"), []).append(
                await atimed(lambda: asyncio.to_thread(lambda: None), n))
            results.setdefault(("async", "hand-off: writer thread, awaited"), []).append(
                await atimed(handed_off, n))

        for meter in meters.values():  # warm-up: tokenizer, catalogue, first files
            for _ in range(30):
                sync_call(meter)()
        for _ in range(args.rounds):
            for name, meter in meters.items():
                results.setdefault(("sync", name), []).append(
                    timed(sync_call(meter), args.calls))
            results.setdefault(("sync", "one O_APPEND write (900 B)"), []).append(
                timed(lambda: os.write(fd, line), args.calls))
            asyncio.run(async_round(args.calls))
        for meter in meters.values():
            meter.close()
        writer.close()
        os.close(fd)
    print(f"{args.rounds} interleaved rounds x {args.calls} calls; load average "
          f"{os.getloadavg()[0]:.2f}; python {sys.version.split()[0]}")
    print(f"{'mode':<6} {'pipeline (begin + finish), budget + memory limiter':<52} "
          f"{'µs/call':>9} {'vs 0.2':>8}")
    for mode in ("sync", "async"):
        base = {kind: statistics.median(results[(mode, f"{kind} 0.2 (no journal)")])
                for kind in ("jsonl", "sqlite")}
        for (m, name), values in results.items():
            if m != mode:
                continue
            value = statistics.median(values)
            kind = name.split()[0]
            ratio = f"x{value / base[kind]:.2f}" if kind in base else ""
            print(f"{mode:<6} {name:<52} {value * 1e6:>9.1f} {ratio:>8}")


if __name__ == "__main__":
    main()
