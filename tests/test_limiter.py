"""The RPM + TPM limiter: properties with an injectable clock, waiting, failure policies."""

from __future__ import annotations

import asyncio
import contextlib
import math
import threading
import time
import uuid
import warnings

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import qwen_meter as qm
from qwen_meter.limits.limiter.core import RateLimiter
from qwen_meter.limits.limiter.gates import FifoGate
from qwen_meter.limits.limiter.values import RateLimit
from qwen_meter.limits.store import MemoryStore, StoreUnavailable


class FakeClock:
    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds

    async def async_sleep(self, seconds: float) -> None:
        self.now += seconds


def limiter(store=None, rpm=5, tpm=1000, smooth=False, clock=None):
    clock = clock or FakeClock()
    return RateLimiter(store or MemoryStore(), account=uuid.uuid4().hex,
                       limits={"m": (rpm, tpm)}, smooth=smooth, clock=clock,
                       sleep=clock.sleep, async_sleep=clock.async_sleep), clock


events = st.lists(st.tuples(st.floats(0, 8), st.integers(1, 400),
                            st.sampled_from(["keep", "refund", "release"]), st.floats(0, 1)),
                  max_size=80)


def run_sequence(rl, clock, sequence):
    admitted = []
    for advance, tokens, action, fraction in sequence:
        clock.now += advance
        try:
            permit = rl.try_acquire("m", tokens)
        except qm.RateLimited as exc:
            assert exc.retry_after > 0
            continue
        if action == "release":
            rl.release(permit)
            continue
        final = tokens if action == "keep" else int(tokens * fraction)
        rl.reconcile(permit, final)
        admitted.append((clock.now, final))
    return admitted


def assert_windows(admitted, rpm, tpm):
    for start, _ in admitted:
        inside = [tokens for t, tokens in admitted if start <= t < start + 60]
        assert len(inside) <= rpm
        assert sum(inside) <= tpm


@given(events, st.booleans())
def test_never_more_than_rpm_or_tpm_in_any_60_seconds(sequence, smooth):
    rl, clock = limiter(smooth=smooth)
    assert_windows(run_sequence(rl, clock, sequence), 5, 1000)


@settings(max_examples=15, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(sequence=events)
def test_limit_property_on_every_store(make_store, store_kind, sequence):
    rl, clock = limiter(make_store())
    assert_windows(run_sequence(rl, clock, sequence), 5, 1000)


def test_waiting_sleeps_until_the_window_frees():
    rl, clock = limiter(rpm=2, tpm=10_000)
    rl.acquire("m", 10)
    rl.acquire("m", 10)
    start = clock.now
    permit = rl.acquire("m", 10)
    assert clock.now - start == pytest.approx(61.0)
    assert permit.bucket == math.floor(clock.now)


def test_fail_fast_and_timeout():
    rl, clock = limiter(rpm=1)
    rl.acquire("m", 1)
    with pytest.raises(qm.RateLimited) as info:
        rl.acquire("m", 1, wait=False)
    assert info.value.retry_after == pytest.approx(61.0)
    with pytest.raises(qm.RateLimited):
        rl.acquire("m", 1, timeout=5)
    assert clock.now == 1000.0  # gave up without sleeping past the deadline


def test_request_bigger_than_tpm_fails_at_once():
    rl, _ = limiter(tpm=1000)
    with pytest.raises(qm.RateLimited, match="can never fit") as info:
        rl.acquire("m", 1001)
    assert info.value.retry_after == math.inf


def test_reconcile_refunds_and_charges():
    rl, _ = limiter(tpm=1000)
    permit = rl.acquire("m", 900)
    assert rl.usage("m") == (1, 900)
    permit = rl.reconcile(permit, 100)
    assert rl.usage("m") == (1, 100)
    rl.reconcile(permit, 300)
    assert rl.usage("m") == (1, 300)
    rl.release(rl.acquire("m", 50))
    assert rl.usage("m") == (1, 300)


def test_per_second_smoothing_spreads_a_burst():
    rl, _ = limiter(rpm=120, tpm=10**6, smooth=True)  # 2 per second
    rl.acquire("m", 1)
    rl.acquire("m", 1)
    with pytest.raises(qm.RateLimited) as info:
        rl.try_acquire("m", 1)
    assert info.value.retry_after == pytest.approx(1.0)


def test_catalogue_limits_and_overrides():
    plain = RateLimiter()
    assert plain.limits_for("qwen-plus") == RateLimit(30_000, 5_000_000)
    assert RateLimiter(region="intl").limits_for("qwen-max") == RateLimit(120, 100_000)
    mine = RateLimiter(limits={"qwen-plus": (60, 100_000)})
    assert mine.limits_for("qwen-plus") == RateLimit(60, 100_000)
    # A dated snapshot has its own (unpublished) limits: it does not inherit qwen-plus's.
    assert mine.limits_for("qwen-plus-2025-12-01") == RateLimit(None, None)
    unknown = RateLimiter(default=RateLimit(10, None))
    assert unknown.limits_for("qwen3.6-plus") == RateLimit(10, None)
    with pytest.raises(ValueError):
        RateLimit(-1, None)


def test_async_acquire_waits_without_blocking():
    rl, _ = limiter(rpm=1)

    async def main():
        first = await rl.acquire_async("m", 1)
        second = await rl.acquire_async("m", 1)
        return first, second

    first, second = asyncio.run(main())
    assert second.bucket - first.bucket == 61


def test_fifo_gate_serves_in_arrival_order():
    gate = FifoGate()
    order = []
    holder = gate.enter()
    assert holder.is_set()
    events = []

    def worker(n):
        event = gate.enter()
        events.append(n)
        event.wait()
        order.append(n)
        gate.leave(event)

    threads = []
    for n in range(5):
        thread = threading.Thread(target=worker, args=(n,))
        thread.start()
        threads.append(thread)
        while len(events) <= n:
            time.sleep(0.001)
    gate.leave(holder)
    for thread in threads:
        thread.join(5)
    assert order == [0, 1, 2, 3, 4]


def dead_redis():
    from redis_server import free_port

    from qwen_meter.limits.store.redis import RedisStore

    return RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2)


def test_store_down_fail_closed_and_open():
    pytest.importorskip("redis")
    closed = RateLimiter(dead_redis(), limits={"m": (5, 100)})
    with pytest.raises(StoreUnavailable):
        closed.acquire("m", 1)
    opened = RateLimiter(dead_redis(), limits={"m": (5, 100)}, on_store_error="open")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        permit = opened.acquire("m", 1)
    assert permit.degraded and caught
    opened.reconcile(permit, 3)
    opened.release(permit)


def test_redis_server_time_shares_one_window(redis_url):
    from qwen_meter.limits.store.redis import RedisStore

    store = RedisStore(redis_url, prefix=f"t{uuid.uuid4().hex[:6]}:")  # server clock
    skewed = RateLimiter(store, limits={"m": (2, None)}, clock=lambda: time.time() + 3600)
    normal = RateLimiter(store, limits={"m": (2, None)})
    skewed.acquire("m")
    normal.acquire("m")
    with pytest.raises(qm.RateLimited):
        normal.try_acquire("m")


# --- issue #11 -----------------------------------------------------------------------------


def test_clock_stepping_back_cannot_over_admit(make_store):
    """The reported case: two admissions at 1001.2, the clock steps back to 1000.9, and 100 of
    100 further calls used to be admitted."""
    c = {"t": 1001.2}
    lim = RateLimiter(make_store(), account=uuid.uuid4().hex,
                      limits={"qwen-plus": (2, 1000)}, smooth=False, clock=lambda: c["t"])
    lim.try_acquire("qwen-plus", 10)
    lim.try_acquire("qwen-plus", 10)
    c["t"] = 1000.9
    admitted = 0
    for _ in range(100):
        with contextlib.suppress(qm.RateLimited):
            lim.try_acquire("qwen-plus", 10)
            admitted += 1
    assert admitted == 0 and lim.usage("qwen-plus") == (2, 20)
    with pytest.raises(qm.RateLimited) as refused:
        lim.try_acquire("qwen-plus", 10)
    assert refused.value.retry_after == pytest.approx(61.1)  # 1001's window ends at 1062
    c["t"] = 1062.0
    assert lim.try_acquire("qwen-plus", 10).bucket == 1062


def test_a_caller_delayed_in_the_store_uses_the_second_it_is_admitted_in():
    """The second is read by the store and clamped under its lock: a caller that waited
    cannot write into a second it looked at before the wait."""
    store = MemoryStore()
    clock = FakeClock(2000.5)
    rl = RateLimiter(store, account="a", limits={"m": (2, None)}, smooth=False, clock=clock)
    reads = []

    def clock_read():
        reads.append(clock.now)
        return clock.now

    rl.clock = clock_read
    rl.try_acquire("m")
    clock.now = 2001.5
    permit = rl.try_acquire("m")
    assert permit.bucket == 2001 and reads[-1] == 2001.5


@pytest.mark.parametrize("bad", [float("nan"), -0.5, float("inf"), "5", True, [1]])
def test_bad_timeouts_are_refused(bad):
    rl, _ = limiter(rpm=1)
    with pytest.raises(qm.InvalidTimeout) as raised:
        rl.acquire("m", 1, timeout=bad)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, TypeError)

    async def main():
        await rl.acquire_async("m", 1, timeout=bad)

    with pytest.raises(qm.InvalidTimeout):
        asyncio.run(main())


def test_nan_timeout_no_longer_hangs_and_zero_means_try_once():
    rl, _ = limiter(rpm=1)
    rl.acquire("m", 1)
    with pytest.raises(qm.RateLimited):
        rl.acquire("m", 1, timeout=0)


def test_async_reconcile_and_release_share_the_sync_core(make_store):
    store = make_store()
    rl, _ = limiter(store, rpm=3, tpm=100)

    async def main():
        first = await rl.acquire_async("m", 60)
        reconciled = await rl.reconcile_async(first, 20)
        second = await rl.acquire_async("m", 70)
        await rl.release_async(second)
        usage = rl.usage("m")
        if hasattr(store, "aclose"):
            await store.aclose()
        return reconciled, usage

    reconciled, usage = asyncio.run(main())
    assert reconciled.tokens == 20 and usage == (1, 20)


def test_async_waiting_does_not_block_the_loop():
    rl = RateLimiter(MemoryStore(), limits={"m": (60, None)}, smooth=True)  # 1 per second

    async def main():
        ticks = 0

        async def ticker():
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.create_task(ticker())
        await rl.acquire_async("m")
        await rl.acquire_async("m", timeout=3)  # waits for the next second
        task.cancel()
        return ticks

    assert asyncio.run(main()) >= 5


def test_sqlite_caller_blocked_on_the_lock_uses_the_second_it_gets_the_lock_in(tmp_path):
    """The stale-second case: a caller that waits for another process's write lock across a
    second boundary must count in the second it is admitted in, not the one it started in."""
    import sqlite3

    from qwen_meter.limits.store.sqlite import SQLiteStore

    path = tmp_path / "stale.db"
    clock = FakeClock(3000.9)
    rl = RateLimiter(SQLiteStore(path, timeout=5), account="a", limits={"m": (100, None)},
                     smooth=False, clock=clock)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    got = []
    caller = threading.Thread(target=lambda: got.append(rl.acquire("m")))
    caller.start()
    time.sleep(0.3)  # the caller is now waiting for the lock, its clock says 3000
    clock.now = 3001.2
    holder.execute("COMMIT")
    caller.join(5)
    assert got and got[0].bucket == 3001
