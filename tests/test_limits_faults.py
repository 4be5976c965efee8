"""Store faults under both policies, with bounded latency: SQLite locked and disk full; Redis
refused, black-holed (accepts, never answers), paused (SIGSTOP), killed and restarted."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
import warnings
from collections.abc import Iterator

import pytest
from redis_server import free_port

import qwen_meter as qm
from qwen_meter.limits.budget.core import Budget
from qwen_meter.limits.limiter.core import RateLimiter
from qwen_meter.limits.store import CircuitBreaker, StoreUnavailable

# The "open" policy warns each time it goes ahead without its store: what these tests do.
pytestmark = pytest.mark.filterwarnings("ignore::qwen_meter.StoreUnavailableWarning")


def limiter(store, policy):
    return RateLimiter(store, account=uuid.uuid4().hex, limits={"m": (100, 10_000)},
                       smooth=False, on_store_error=policy)


def outcome_of(fn):
    try:
        return fn()
    except Exception as exc:  # the caller looks at what came out
        return exc


def count_attempts(store):
    """Count the calls that reach the store (the breaker let them through), so a test can
    check that an open breaker stops calling the store — not how fast that is."""
    breaker = store.breaker
    attempts = [0]
    before = breaker.before

    def counted():
        before()  # raises while the breaker is open: that call never reaches the store
        attempts[0] += 1

    breaker.before = counted
    return attempts


def assert_policy(store, policy, *, calls: int = 8) -> None:
    """Every call fails over to the policy; after the breaker opens, calls stop trying the
    store (so they no longer wait on it)."""
    rl = limiter(store, policy)
    budget = Budget("1 CNY", name=uuid.uuid4().hex, store=store, on_store_error=policy)
    attempts = count_attempts(store)
    outcomes = [outcome_of(lambda: rl.acquire("m", 10, timeout=1)) for _ in range(calls)]
    for outcome in outcomes:
        if policy == "closed":
            assert isinstance(outcome, StoreUnavailable), outcome
        else:
            assert isinstance(outcome, qm.Permit) and outcome.degraded
    # The first `failures` calls tried the store and failed; every later one was skipped.
    assert attempts[0] == store.breaker.failures
    assert store.breaker.open
    assert store.degraded and rl.degraded
    held = outcome_of(lambda: budget.reserve("0.1"))
    assert attempts[0] == store.breaker.failures  # the budget did not wait on the store either
    if policy == "closed":
        assert isinstance(held, StoreUnavailable)
    else:
        assert held.degraded
        assert budget.commit(held, "0.05").degraded
        assert budget.status().degraded


# --- SQLite -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_sqlite_locked(tmp_path, policy):
    from qwen_meter.limits.store.sqlite import SQLiteStore

    path = tmp_path / "locked.db"
    store = SQLiteStore(path, timeout=0.2)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process keeps the write lock
    try:
        assert_policy(store, policy)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@contextlib.contextmanager
def tiny_tmpfs(tmp_path) -> Iterator[str]:
    folder = tmp_path / "tiny"
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=192k", "tmpfs", str(folder)],
                          capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root?); the RLIMIT_FSIZE test covers it")
    try:
        yield str(folder)
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def fill(store, policy, rl, budget):
    """Write until the disk is full; return what the first failing call gave."""
    for n in range(20_000):
        try:
            with contextlib.suppress(qm.RateLimited):
                rl.acquire("m", 10, timeout=0)
            budget.reserve("0.001", key=f"user-{n}-{'x' * 200}")
        except StoreUnavailable as exc:
            return exc
        if store.degraded:
            return "degraded"
    raise AssertionError("the disk never filled")


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_sqlite_disk_full(tmp_path, policy):
    from qwen_meter.limits.store.sqlite import SQLiteStore

    with tiny_tmpfs(tmp_path) as folder:
        store = SQLiteStore(os.path.join(folder, "full.db"), timeout=0.2)
        rl = RateLimiter(store, account="a", limits={"m": (100, 10_000)},
                         on_store_error=policy)
        budget = Budget("1000 CNY", name="b", scope="user", store=store,
                        on_store_error=policy)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", qm.StoreUnavailableWarning)
            first = fill(store, policy, rl, budget)
        if policy == "closed":
            assert isinstance(first, StoreUnavailable) and "full" in str(first).lower()
        else:
            assert first == "degraded"
        store.close()


def test_sqlite_file_size_limit_in_a_subprocess(tmp_path):
    """Where no tmpfs can be mounted: RLIMIT_FSIZE makes every write past 96 KiB fail (EFBIG),
    which SQLite reports as a disk error; the store must still answer with StoreUnavailable."""
    script = f"""
import resource, signal, sys, warnings
sys.path.insert(0, {os.getcwd()!r})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from qwen_meter.store.sqlite import SQLiteStore
from qwen_meter.store import StoreUnavailable
from qwen_meter.budget import Budget
store = SQLiteStore({str(tmp_path / 'limited.db')!r}, timeout=0.2)
resource.setrlimit(resource.RLIMIT_FSIZE, (96 * 1024, 96 * 1024))
budget = Budget("1000 CNY", name="b", scope="user", store=store)
for n in range(20000):
    try:
        budget.reserve("0.001", key="user-%d-%s" % (n, "x" * 300))
    except StoreUnavailable as exc:
        print("StoreUnavailable", exc)
        break
else:
    print("never failed")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout.startswith("StoreUnavailable"), done.stdout + done.stderr


# --- Redis --------------------------------------------------------------------------------


def redis_store(url, **options):
    from qwen_meter.limits.store.redis import RedisStore

    return RedisStore(url, prefix=f"fault-{uuid.uuid4().hex[:6]}:", **options)


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_redis_refused(policy):
    pytest.importorskip("redis")
    store = redis_store(f"redis://127.0.0.1:{free_port()}/0", timeout=0.3)
    assert_policy(store, policy)


@contextlib.contextmanager
def black_hole() -> Iterator[int]:
    """A 127.0.0.1 socket that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        stop.set()
        thread.join(2)
        for conn in accepted:
            conn.close()
        server.close()


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_redis_black_holed(policy):
    pytest.importorskip("redis")
    with black_hole() as port:
        store = redis_store(f"redis://127.0.0.1:{port}/0", timeout=0.3)
        assert_policy(store, policy)


@contextlib.contextmanager
def own_redis(port: int) -> Iterator[subprocess.Popen]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    import redis

    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save",
                                "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
    client = redis.Redis(port=port)
    for _ in range(100):
        with contextlib.suppress(redis.exceptions.ConnectionError):
            client.ping()
            break
        time.sleep(0.05)
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGCONT)
        process.terminate()
        process.wait(10)


def recovers(store, rl, cooldown: float) -> None:
    """After the cool-down the breaker lets a trial through and the store counts again."""
    time.sleep(cooldown + 0.05)
    permit = rl.acquire("m", 10, timeout=1)
    assert not permit.degraded and not store.degraded


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_redis_paused_then_resumed(policy):
    pytest.importorskip("redis")
    port = free_port()
    with own_redis(port) as server:
        store = redis_store(f"redis://127.0.0.1:{port}/0", timeout=0.3,
                            breaker=CircuitBreaker(3, 0.5))
        rl = limiter(store, policy)
        assert not rl.acquire("m", 10).degraded
        os.kill(server.pid, signal.SIGSTOP)
        try:
            assert_policy(store, policy, calls=5)
        finally:
            os.kill(server.pid, signal.SIGCONT)
        recovers(store, rl, 0.5)


@pytest.mark.parametrize("policy", ["closed", "open"])
def test_redis_killed_and_restarted(policy):
    pytest.importorskip("redis")
    port = free_port()
    with own_redis(port) as server:
        store = redis_store(f"redis://127.0.0.1:{port}/0", timeout=0.3,
                            breaker=CircuitBreaker(3, 0.3))
        rl = limiter(store, policy)
        assert not rl.acquire("m", 10).degraded
        server.kill()
        server.wait(10)
        assert_policy(store, policy, calls=5)
        with own_redis(port):
            recovers(store, rl, 0.3)


def test_breaker_is_logged(caplog):
    breaker = CircuitBreaker(2, 0.2, name="test store")
    with caplog.at_level("WARNING", logger="qwen_meter.store"):
        breaker.failure()
        breaker.failure()
        with pytest.raises(StoreUnavailable, match="circuit open"):
            breaker.before()
        time.sleep(0.25)
        breaker.before()  # the trial
        with pytest.raises(StoreUnavailable):
            breaker.before()  # only one trial at a time
        breaker.success()
    assert "skipping it" in caplog.text and "circuit closed" in caplog.text
    assert not breaker.open
