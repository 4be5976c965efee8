"""How long a key change in one process takes to reach another process's ``Ledger.watch``.

Run:  python benchmarks/bench_ledger_watch.py [--changes 30] [--postgres URL]

Process A (this one) creates, changes and revokes keys; process B (spawned) watches the same
ledger and notes when each callback runs. The figure per change is from the moment A calls
``create_key`` / ``update_key`` / ``revoke_key`` to the moment B's callback sees the version
that change made: A's commit plus the propagation (SQLite: B's 0.5 s poll; PostgreSQL:
NOTIFY delivered on B's listening connection). Changes are spaced by a random pause of up to
0.7 s, so the poll's phase is sampled evenly. Times are ``time.monotonic()``, one clock for
every process of the host.

PostgreSQL: ``--postgres`` or $QWEN_METER_TEST_POSTGRES_URL (a scratch database is made on
that server and dropped afterwards); without either only SQLite is measured.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import queue
import random
import statistics
import tempfile
import time
import uuid
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from qwen_meter.ledger import KeyEntry, hash_key, open_ledger


def watcher(url: str, ready: Any, stop: Any, out: Any) -> None:
    ledger = open_ledger(url)
    ledger.watch(lambda version: out.put((version, time.monotonic())))
    ready.set()
    stop.wait(600)
    ledger.close()


def measure(url: str, changes: int) -> tuple[list[float], list[float]]:
    """(ms from each change's start to B's callback, ms of A's commit alone)."""
    spawn = multiprocessing.get_context("spawn")
    ready, stop, out = spawn.Event(), spawn.Event(), spawn.Queue()
    b = spawn.Process(target=watcher, args=(url, ready, stop, out))
    ledger = open_ledger(url)
    b.start()
    ready.wait(60)
    time.sleep(1.0)  # B's watch connected and idle
    rnd = random.Random(1)
    started: dict[int, float] = {}
    commits = []
    for i in range(changes):
        time.sleep(rnd.uniform(0.05, 0.7))
        t0 = time.monotonic()
        if i % 3 == 0:
            ledger.create_key(KeyEntry(name=f"k{i}", hash=hash_key(f"sk-qm-bench-{i}")))
        elif i % 3 == 1:
            ledger.update_key(f"k{i - 1}", rpm=10 + i)
        else:
            ledger.revoke_key(f"k{i - 2}")
        commits.append((time.monotonic() - t0) * 1000)
        started[ledger.version()] = t0
    # A poll that finds two changes reports only the newer version: a change has reached B
    # at the first callback with its version or a later one.
    calls: list[tuple[int, float]] = []
    deadline = time.monotonic() + 10
    while (not calls or calls[-1][0] < max(started)) and time.monotonic() < deadline:
        try:
            calls.append(out.get(timeout=1))
        except queue.Empty:
            continue
    stop.set()
    b.join(30)
    ledger.close()
    latencies = []
    for version, t0 in started.items():
        reached = next((at for seen, at in calls if seen >= version), None)
        if reached is None:
            raise SystemExit(f"{url}: the watcher never saw version {version}")
        latencies.append((reached - t0) * 1000)
    return latencies, commits


def describe(name: str, latencies: list[float], commits: list[float]) -> str:
    q = statistics.quantiles(latencies, n=20)
    return (f"{name:<11} change → callback in another process: p50 "
            f"{statistics.median(latencies):6.1f} ms  p95 {q[18]:6.1f} ms  "
            f"max {max(latencies):6.1f} ms   (A's commit p50 "
            f"{statistics.median(commits):.1f} ms; {len(latencies)} changes)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--postgres", default=os.environ.get("QWEN_METER_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        print(describe("SQLite", *measure(f"sqlite:///{folder}/ledger.db", args.changes)))
    if args.postgres:
        import psycopg

        name = "qm_bench_" + uuid.uuid4().hex[:10]
        with psycopg.connect(args.postgres, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}"')
        parts = urlsplit(args.postgres)
        try:
            url = urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, ""))
            print(describe("PostgreSQL", *measure(url, args.changes)))
        finally:
            with psycopg.connect(args.postgres, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
