"""Limiter overhead and throughput: qwen_meter's memory, SQLite, Redis and Redis Cluster
limiters at 1 and 8 threads side by side with aiolimiter, pyrate-limiter and limits, and the
floor of one Redis round trip (PING, EVALSHA of 'return 1').

Run:  pip install ".[bench]"; python benchmarks/bench_limiter.py
      python benchmarks/bench_limiter.py --sqlite   (the SQLite store against its floor only)
      python benchmarks/bench_limiter.py --redis    (the Redis store against its floor only)
A redis-server binary on PATH is started on a free port (or set QWEN_METER_BENCH_REDIS_URL), and
a 3-master Redis Cluster next to it (or set QWEN_METER_BENCH_REDIS_CLUSTER_URL).
Limits are set so high that nothing is ever refused: this measures the bookkeeping itself.
qwen_meter enforces RPM and TPM together (acquire + reconcile per call); the peers enforce one
rate per call, as they can. The SQLite and Redis stores keep a reconcile's refund for their
next operation (at most ``refund_delay``, 0.05 s): see docs/guides/limits.md.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from redis_server import running_redis, running_redis_cluster

HUGE = 10**12


def rate(fn: Callable[[], object], n: int, threads: int, repeat: int = 3) -> dict[str, float]:
    """Calls per second and µs per call for n calls spread over threads (the best of
    ``repeat`` runs, so a moment of CPU contention from elsewhere does not decide a row)."""
    per_thread = n // threads
    best = float("inf")
    for _ in range(repeat):
        barrier = threading.Barrier(threads + 1)

        def worker(barrier: threading.Barrier = barrier) -> None:
            barrier.wait()
            for _ in range(per_thread):
                fn()

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for thread in pool:
            thread.start()
        barrier.wait()
        start = time.perf_counter()
        for thread in pool:
            thread.join()
        best = min(best, time.perf_counter() - start)
    total = per_thread * threads
    return {"calls/s": round(total / best), "µs/call": round(best / total * 1e6, 2)}


@contextmanager
def redis_server() -> Iterator[str | None]:
    url = os.environ.get("QWEN_METER_BENCH_REDIS_URL")
    if url:
        yield url
        return
    with running_redis() as started:
        yield started


@contextmanager
def redis_cluster() -> Iterator[str | None]:
    url = os.environ.get("QWEN_METER_BENCH_REDIS_CLUSTER_URL")
    if url:
        yield url
        return
    with running_redis_cluster() as started:
        yield started


def qwen_meter_case(store, smooth: bool = True) -> Callable[[], object]:
    from qwen_meter.limits.limiter.core import RateLimiter

    limiter = RateLimiter(store, limits={"m": (HUGE, HUGE)}, smooth=smooth)

    def call() -> None:
        permit = limiter.acquire("m", 1200)
        limiter.reconcile(permit, 800)

    return call


def sqlite_floor(path: str) -> Callable[[], object]:
    """One write transaction on a WAL file with the store's settings: the least one
    cross-process acquire can cost."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE w (key TEXT, bucket INTEGER, amount INTEGER, "
               "PRIMARY KEY (key, bucket)) WITHOUT ROWID")

    def transaction() -> None:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO w VALUES ('k', ?, 1) ON CONFLICT (key, bucket) "
                   "DO UPDATE SET amount = amount + 1", (int(time.time()),))
        db.execute("COMMIT")

    return transaction


def sqlite_one_statement(path: str) -> Callable[[], object]:
    """The same upsert as :func:`sqlite_floor` as one autocommit statement (SQLite wraps it in
    a write transaction of its own): the store's quiet acquire is one such statement."""
    import sqlite3

    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("CREATE TABLE w (key TEXT, bucket INTEGER, amount INTEGER, "
               "PRIMARY KEY (key, bucket)) WITHOUT ROWID")

    def statement() -> None:
        db.execute("INSERT INTO w VALUES ('k', ?, 1) ON CONFLICT (key, bucket) "
                   "DO UPDATE SET amount = amount + 1", (int(time.time()),))

    return statement


def peers() -> dict[str, Callable[[], object]]:
    out: dict[str, Callable[[], object]] = {}
    try:
        from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

        pyrate = Limiter(InMemoryBucket([Rate(HUGE, Duration.MINUTE)]))
        out["pyrate-limiter InMemoryBucket (1 rate)"] = lambda: pyrate.try_acquire("k", 1)
    except ImportError:
        pass
    try:
        from limits import RateLimitItemPerMinute, storage, strategies

        item = RateLimitItemPerMinute(HUGE)
        for label, cls in (("limits FixedWindow", strategies.FixedWindowRateLimiter),
                           ("limits SlidingWindowCounter",
                            strategies.SlidingWindowCounterRateLimiter),
                           ("limits MovingWindow", strategies.MovingWindowRateLimiter)):
            strategy = cls(storage.MemoryStorage())
            out[f"{label} memory (1 rate)"] = (lambda s=strategy: s.hit(item, "k"))
        # The same work as qwen_meter's RPM + TPM: two hits, the second costing the tokens
        # (limits has no refund, so there is no reconcile to add).
        for label, cls in (("limits FixedWindow", strategies.FixedWindowRateLimiter),
                           ("limits SlidingWindowCounter",
                            strategies.SlidingWindowCounterRateLimiter)):
            strategy = cls(storage.MemoryStorage())
            out[f"{label} memory (RPM+TPM: 2 hits, cost=tokens)"] = (
                lambda s=strategy: (s.hit(item, "req"), s.hit(item, "tok", cost=1200)))
    except ImportError:
        pass
    return out


def aiolimiter_rate(n: int, tasks: int) -> dict[str, float] | None:
    try:
        from aiolimiter import AsyncLimiter
    except ImportError:
        return None
    limiter = AsyncLimiter(HUGE, 60)

    async def worker(count: int) -> None:
        for _ in range(count):
            async with limiter:
                pass

    async def main() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(worker(n // tasks) for _ in range(tasks)))
        return time.perf_counter() - start

    elapsed = asyncio.run(main())
    total = (n // tasks) * tasks
    return {"calls/s": round(total / elapsed), "µs/call": round(elapsed / total * 1e6, 2)}


def sqlite_paired(batches: int = 60, size: int = 200) -> dict[str, object]:
    """The SQLite store against its floor, in ``batches`` interleaved batches of ``size`` calls
    each (floor, store acquire alone, limiter acquire + reconcile, and the floor's upsert as
    one autocommit statement for reference), so a burst of load from elsewhere hits all alike:
    the median µs per call of each, wall clock and this process's CPU time (steadier on a
    shared machine: time spent preempted is not counted), and the medians of the per-batch
    ratios to the floor. The limiter's refunds wait for its next acquire (the store's
    ``refund_delay``), so acquire + reconcile writes once per call, as the floor does."""
    import statistics

    from qwen_meter.limits.store.base import WindowCheck
    from qwen_meter.limits.store.sqlite import SQLiteStore

    def per_call(fn: Callable[[], object]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(size):
            fn()
        return ((time.perf_counter() - wall) / size * 1e6,
                (time.process_time() - cpu) / size * 1e6)

    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteStore(os.path.join(folder, "bench.db"))
        checks = [WindowCheck("r", HUGE, 1), WindowCheck("t", HUGE, 1200)]
        cases = {"floor": sqlite_floor(os.path.join(folder, "floor.db")),
                 "acquire": lambda: store.window_acquire(checks, time.time),
                 "acquire + reconcile": qwen_meter_case(store),
                 "floor's upsert alone (autocommit)":
                     sqlite_one_statement(os.path.join(folder, "one.db"))}
        for fn in cases.values():  # warm up: the statement cache, the file's first pages
            for _ in range(size):
                fn()
        times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
        for _ in range(batches):
            for name, fn in cases.items():
                times[name].append(per_call(fn))
        store.close()
    out: dict[str, dict[str, float] | list[float]] = {}
    for name, runs in times.items():
        row = out[name] = {"µs/call wall (median)": round(statistics.median(w for w, _ in runs), 2),
                           "µs/call CPU (median)": round(statistics.median(c for _, c in runs), 2)}
        if name != "floor":
            floor = times["floor"]
            row["÷ floor, wall (median of paired batches)"] = round(statistics.median(
                w / f[0] for (w, _), f in zip(runs, floor, strict=True)), 2)
            row["÷ floor, CPU (median of paired batches)"] = round(statistics.median(
                c / f[1] for (_, c), f in zip(runs, floor, strict=True) if f[1] > 0), 2)
    out["load average"] = [round(x, 2) for x in os.getloadavg()]
    return dict(out)


def redis_paired(url: str, batches: int = 60, size: int = 200) -> dict[str, object]:
    """The Redis store against its floor (one ``EVALSHA`` of ``return 1`` through redis-py),
    interleaved as :func:`sqlite_paired` does: the store's acquire alone, and a limiter's
    acquire + reconcile (one round trip: the reconcile's refund waits for the next acquire
    and rides in its arguments, at most the store's ``refund_delay`` later)."""
    import statistics

    import redis

    from qwen_meter.limits.store.base import WindowCheck
    from qwen_meter.limits.store.redis import RedisStore

    def per_call(fn: Callable[[], object]) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        for _ in range(size):
            fn()
        return ((time.perf_counter() - wall) / size * 1e6,
                (time.process_time() - cpu) / size * 1e6)

    client = redis.Redis.from_url(url)
    sha = client.script_load("return 1")
    store = RedisStore(url, prefix="bench:")
    checks = [WindowCheck("{m}:r", HUGE, 1), WindowCheck("{m}:t", HUGE, 1200)]
    cases = {"floor": lambda: client.evalsha(sha, 0),
             "acquire": lambda: store.window_acquire(checks, time.time),
             "acquire + reconcile": qwen_meter_case(store)}
    for fn in cases.values():  # warm up: connections, script cache
        for _ in range(size):
            fn()
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in cases}
    for _ in range(batches):
        for name, fn in cases.items():
            times[name].append(per_call(fn))
    store.close()
    client.close()
    out: dict[str, dict[str, float] | list[float]] = {}
    for name, runs in times.items():
        row = out[name] = {"µs/call wall (median)": round(statistics.median(w for w, _ in runs), 2),
                           "µs/call CPU (median)": round(statistics.median(c for _, c in runs), 2)}
        if name != "floor":
            floor = times["floor"]
            row["÷ floor, wall (median of paired batches)"] = round(statistics.median(
                w / f[0] for (w, _), f in zip(runs, floor, strict=True)), 2)
            row["÷ floor, CPU (median of paired batches)"] = round(statistics.median(
                c / f[1] for (_, c), f in zip(runs, floor, strict=True) if f[1] > 0), 2)
    out["load average"] = [round(x, 2) for x in os.getloadavg()]
    return dict(out)


def main() -> None:
    from qwen_meter.limits.store import MemoryStore
    from qwen_meter.limits.store.sqlite import SQLiteStore

    if "--sqlite" in sys.argv[1:]:
        print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(),
                          "sqlite": sqlite_paired()}, indent=2, ensure_ascii=False))
        return
    if "--redis" in sys.argv[1:]:
        with redis_server() as url:
            result = redis_paired(url) if url else {"skipped": "no redis-server"}
        print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(),
                          "redis": result}, indent=2, ensure_ascii=False))
        return
    report: dict[str, dict[str, object]] = {}
    n = 40_000
    for label, fn in {"qwen_meter memory (RPM+TPM, smoothing)": qwen_meter_case(MemoryStore()),
                      "qwen_meter memory (RPM+TPM, no smoothing)":
                          qwen_meter_case(MemoryStore(), smooth=False),
                      **peers()}.items():
        report[label] = {"1 thread": rate(fn, n, 1), "8 threads": rate(fn, n, 8)}
    report["aiolimiter (async, 1 rate)"] = {"1 task": aiolimiter_rate(n, 1),
                                            "8 tasks": aiolimiter_rate(n, 8)}
    with tempfile.TemporaryDirectory() as folder:
        sqlite = SQLiteStore(os.path.join(folder, "bench.db"))
        fn = qwen_meter_case(sqlite)
        floor = sqlite_floor(os.path.join(folder, "floor.db"))
        # Interleaved, so a burst of load from elsewhere hits both rows alike.
        rows: dict[str, list[dict[str, float]]] = {"floor": [], "limiter": []}
        for _ in range(5):
            rows["floor"].append(rate(floor, 2000, 1, repeat=1))
            rows["limiter"].append(rate(fn, 2000, 1, repeat=1))
        for name, label in (("floor", "SQLite floor: one transaction (BEGIN IMMEDIATE, "
                                      "one upsert, COMMIT)"),
                            ("limiter", "qwen_meter SQLite (RPM+TPM)")):
            best = min(rows[name], key=lambda row: row["µs/call"])
            report[label] = {"1 thread": best}
        report["qwen_meter SQLite (RPM+TPM)"]["8 threads"] = rate(fn, 4000, 8)
        report["qwen_meter SQLite (RPM+TPM)"]["÷ floor (median of 5 paired runs)"] = round(
            sorted(b["µs/call"] / a["µs/call"] for a, b in zip(rows["floor"],
                                                               rows["limiter"], strict=True))[2], 2)
        sqlite.close()
    with redis_server() as url:
        if url is None:
            report["redis"] = {"skipped": "no redis-server"}
        else:
            import redis

            from qwen_meter.limits.store.redis import RedisStore

            client = redis.Redis.from_url(url)
            sha = client.script_load("return 1")
            report["Redis floor: PING"] = {"1 thread": rate(client.ping, 10_000, 1),
                                           "8 threads": rate(client.ping, 10_000, 8)}
            report["Redis floor: EVALSHA 'return 1'"] = {
                "1 thread": rate(lambda: client.evalsha(sha, 0), 10_000, 1),
                "8 threads": rate(lambda: client.evalsha(sha, 0), 10_000, 8)}
            store = RedisStore(url, prefix="bench:")
            limiter_fn = qwen_meter_case(store)
            from qwen_meter.limits.limiter.core import RateLimiter

            only = RateLimiter(store, limits={"m": (HUGE, HUGE)})
            report["qwen_meter Redis acquire only (1 EVALSHA)"] = {
                "1 thread": rate(lambda: only.acquire("m", 1200), 10_000, 1),
                "8 threads": rate(lambda: only.acquire("m", 1200), 10_000, 8)}
            report["qwen_meter Redis acquire + reconcile (1 EVALSHA, refund ahead)"] = {
                "1 thread": rate(limiter_fn, 10_000, 1), "8 threads": rate(limiter_fn, 10_000, 8)}
            try:
                from limits import RateLimitItemPerMinute, storage, strategies

                item = RateLimitItemPerMinute(HUGE)
                counter = strategies.SlidingWindowCounterRateLimiter(
                    storage.storage_from_string(url))
                report["limits SlidingWindowCounter redis (1 rate)"] = {
                    "1 thread": rate(lambda: counter.hit(item, "k"), 10_000, 1),
                    "8 threads": rate(lambda: counter.hit(item, "k"), 10_000, 8)}
            except ImportError:
                pass
    with redis_cluster() as url:
        if url is None:
            report["redis cluster"] = {"skipped": "no redis-server"}
        else:
            from qwen_meter.limits.store.redis import RedisStore

            store = RedisStore(url, prefix="bench:")
            client = store.redis
            sha = client.script_load("return 1")
            report["Redis Cluster floor: EVALSHA 'return 1' (one key)"] = {
                "1 thread": rate(lambda: client.evalsha(sha, 1, "{m}"), 10_000, 1),
                "8 threads": rate(lambda: client.evalsha(sha, 1, "{m}"), 10_000, 8)}
            fn = qwen_meter_case(store)
            report["qwen_meter Redis Cluster acquire + reconcile (2 EVALSHA)"] = {
                "1 thread": rate(fn, 10_000, 1), "8 threads": rate(fn, 10_000, 8)}
            store.close()
    print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count(),
                      "results": report}, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
