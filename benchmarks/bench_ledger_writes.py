"""What a record costs to write into the ledger, SQLite and PostgreSQL, beside the SQLite usage
log.

Run:  python benchmarks/bench_ledger_writes.py [--records 400] [--postgres URL]

For each store: ``append`` one record at a time from one thread (``durability="flush"``: each
append is its own committed transaction), the journal's pair per call (``append_intent`` then
``append``), and ``append_async`` from 50 concurrent tasks (the ledger's writer thread commits
what is queued in one transaction, and each task awaits its record). Figures are µs per record
(per call for the pair), the median of three runs.

PostgreSQL: ``--postgres`` or $QWEN_METER_TEST_POSTGRES_URL (a scratch database on that server,
dropped afterwards).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from qwen_meter.ledger import open_ledger
from qwen_meter.meter.records import UsageRecord
from qwen_meter.meter.sqlite_log import SQLiteLog


def records(n: int) -> list[UsageRecord]:
    return [UsageRecord(model="qwen-plus", cost="0.0012", currency="CNY", prompt_tokens=120,
                        completion_tokens=40, tags=("key=bench", "team=perf"), user="u")
            for _ in range(n)]


def per_record(run: Callable[[], float]) -> float:
    return statistics.median(run() for _ in range(3))


def measure(make: Callable[[], Any], n: int) -> tuple[float, float, float]:
    log = make()

    def sync() -> float:
        batch = records(n)
        t0 = time.perf_counter()
        for r in batch:
            log.append(r)
        return (time.perf_counter() - t0) / n * 1e6

    def pair() -> float:
        batch = records(n)
        t0 = time.perf_counter()
        for r in batch:
            log.append_intent({"journal": "intent", "id": r.id, "model": r.model,
                               "time": r.time})
            log.append(r)
        return (time.perf_counter() - t0) / n * 1e6

    def concurrent() -> float:
        batch = records(n)

        async def main() -> float:
            t0 = time.perf_counter()
            queue = iter(batch)

            async def worker() -> None:
                for r in queue:
                    await log.append_async(r)

            await asyncio.gather(*(worker() for _ in range(50)))
            return (time.perf_counter() - t0) / n * 1e6

        return asyncio.run(main())

    out = per_record(sync), per_record(pair), per_record(concurrent)
    log.close()
    return out


@contextmanager
def scratch_postgres(server: str) -> Iterator[str]:
    import psycopg

    name = "qm_bench_" + uuid.uuid4().hex[:10]
    with psycopg.connect(server, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
    finally:
        with psycopg.connect(server, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def show(name: str, values: tuple[float, float, float]) -> None:
    sync, pair, concurrent = values
    print(f"{name:<28}{sync:>10.0f}{pair:>15.0f}{concurrent:>11.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=400)
    parser.add_argument("--postgres", default=os.environ.get("QWEN_METER_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    print(f"{'µs per record':<28}{'append':>10}{'intent+append':>15}{'async x50':>11}")
    with tempfile.TemporaryDirectory() as folder:
        rows = {"SQLiteLog (usage log)": lambda: SQLiteLog(f"{folder}/usage.db"),
                "ledger, SQLite": lambda: open_ledger(f"sqlite:///{folder}/ledger.db")}
        for name, make in rows.items():
            show(name, measure(make, args.records))
    if args.postgres:
        with scratch_postgres(args.postgres) as url:
            show("ledger, PostgreSQL", measure(lambda: open_ledger(url), args.records))


if __name__ == "__main__":
    main()
