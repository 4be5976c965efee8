"""One conformance suite for the memory, SQLite and Redis stores."""

from __future__ import annotations

import pytest

from qwen_meter.limits.store import WindowCheck
from qwen_meter.limits.store.base import from_units, to_units


def test_window_acquire_is_all_or_nothing(make_store):
    store = make_store()
    checks = [WindowCheck("a", 3, 1), WindowCheck("b", 100, 60)]
    assert store.window_acquire(checks, 1000).ok
    result = store.window_acquire(checks, 1000)
    assert not result.ok and result.refused_key == "b"
    assert store.window_sum("a", 1000) == 1  # the refused call added nothing to "a"
    assert store.window_sum("b", 1000) == 60


def test_window_slides_over_61_buckets(make_store):
    store = make_store()
    assert store.window_acquire([WindowCheck("k", 2, 1)], 100).ok
    assert store.window_acquire([WindowCheck("k", 2, 1)], 130).ok
    refused = store.window_acquire([WindowCheck("k", 2, 1)], 150)
    assert not refused.ok and refused.retry_buckets == 11  # bucket 100 leaves at 161
    assert not store.window_acquire([WindowCheck("k", 2, 1)], 160).ok
    assert store.window_acquire([WindowCheck("k", 2, 1)], 161).ok
    assert store.window_sum("k", 161) == 2


def test_per_second_smoothing(make_store):
    store = make_store()
    assert store.window_acquire([WindowCheck("s", 100, 60, per_second=50)], 7).ok
    second = store.window_acquire([WindowCheck("s", 100, 1, per_second=50)], 7)
    assert not second.ok and second.retry_buckets == 1
    assert store.window_acquire([WindowCheck("s", 100, 1, per_second=50)], 8).ok


def test_window_adjust_refunds_and_charges(make_store):
    store = make_store()
    store.window_acquire([WindowCheck("t", 1000, 800)], 50)
    store.window_adjust("t", 50, -500)
    assert store.window_sum("t", 50) == 300
    store.window_adjust("t", 50, 200)
    assert store.window_sum("t", 60) == 500
    store.window_adjust("t", 50, -10_000)
    assert store.window_sum("t", 60) == 0
    store.window_adjust("t", 49, 5)  # a bucket never written stays empty
    assert store.window_sum("t", 60) == 0


def test_ledger_reserve_commit_release(make_store):
    store = make_store()
    r1 = store.ledger_reserve("b", "r1", 60, 100, lease_until=2000, now=1000, expire_at=None)
    assert (r1.ok, r1.committed, r1.reserved) == (True, 0, 60)
    r2 = store.ledger_reserve("b", "r2", 50, 100, lease_until=2000, now=1000, expire_at=None)
    assert not r2.ok and r2.reserved == 60
    done = store.ledger_commit("b", "r1", 30, now=1001, expire_at=None)
    assert (done.committed, done.reserved) == (30, 0)
    assert store.ledger_reserve("b", "r3", 70, 100, 2000, 1001, None).ok
    released = store.ledger_release("b", "r3", now=1002)
    assert (released.committed, released.reserved) == (30, 0)
    assert store.ledger_totals("b", 1003).committed == 30


def test_unlimited_reserve_and_commit_without_reservation(make_store):
    store = make_store()
    assert store.ledger_reserve("u", "r", 10**12, None, 2000, 1000, None).ok
    lax = store.ledger_commit("u", "gone", 7, 1000, None)  # spend recorded without a hold
    assert (lax.ok, lax.committed, lax.state) == (True, 7, "unknown")
    assert store.ledger_commit("u", "gone", 7, 1000, None).committed == 7  # but only once


def test_expired_leases_stop_counting(make_store):
    store = make_store()
    assert store.ledger_reserve("l", "crashed", 90, 100, lease_until=1010, now=1000,
                                expire_at=None).ok
    assert not store.ledger_reserve("l", "x", 20, 100, 1100, now=1005, expire_at=None).ok
    after = store.ledger_reserve("l", "y", 20, 100, 1100, now=1011, expire_at=None)
    assert after.ok and after.reserved == 20


def test_ledger_expires_with_its_period(make_store, store_kind):
    store = make_store()
    store.ledger_commit("p", "r", 40, now=1000, expire_at=5000)
    assert store.ledger_totals("p", 1000).committed == 40
    if store_kind in ("redis", "cluster"):
        pytest.skip("Redis expires keys by its own clock; covered by the TTL check below")
    assert store.ledger_totals("p", 5001).committed == 0


def _redis_keys(store):
    return [k.decode() for k in store.redis.scan_iter(match=f"{store.prefix}*")]


def test_every_redis_key_expires(make_store, store_kind):
    if store_kind not in ("redis", "cluster"):
        pytest.skip("Redis only")
    store = make_store()
    store.window_acquire([WindowCheck("w", 10, 1)], 10)
    store.ledger_reserve("d", "r", 5, 100, 2_000_000_000, 1000, 2_100_000_000)
    # A lifetime ledger (no period end) too, and the tombstones a commit and release leave.
    store.ledger_reserve("life", "a", 5, None, 2000, 1000, None)
    store.ledger_reserve("life", "b", 5, None, 2000, 1000, None)
    store.ledger_commit("life", "a", 5, 1001, None, strict=True)
    store.ledger_release("life", "b", 1001)
    keys = _redis_keys(store)
    assert len(keys) >= 7 and all(k.startswith(store.prefix) for k in keys)
    ttls = {k: store.redis.ttl(k) for k in keys}
    assert all(ttl > 0 for ttl in ttls.values()), ttls
    lifetime = [ttl for k, ttl in ttls.items() if "{life}:c" in k]
    assert lifetime and lifetime[0] > 300 * 86_400  # the documented 400-day retention


def test_one_limiter_or_ledger_lives_in_one_cluster_slot(make_store, store_kind):
    if store_kind not in ("redis", "cluster"):
        pytest.skip("Redis only")
    from redis.crc import key_slot

    store = make_store()
    keys = [store._window_key(f"rl:{{acct:qwen-plus}}:{kind}") for kind in ("req", "tok")]
    assert len({key_slot(k.encode()) for k in keys}) == 1
    ledger = store._ledger_keys("budget:x:user={u}:all")
    assert len({key_slot(k.encode()) for k in ledger}) == 1
    models = {key_slot(store._window_key(f"rl:{{acct:m{i}}}:req").encode()) for i in range(20)}
    assert len(models) > 1  # different models spread over the cluster


def test_clamped_second_never_writes_behind_the_newest(make_store):
    store = make_store()
    check = [WindowCheck("c", 2, 1)]
    assert store.window_acquire(check, 1001).ok
    assert store.window_acquire(check, 1001).ok
    # A caller whose clock (or stale reading) says 1000 must still see both admissions.
    late = store.window_acquire(check, 1000)
    assert not late.ok and late.bucket == 1001 and late.retry_buckets == 61
    assert store.window_sum("c", 1000) == 2
    assert store.window_acquire(check, lambda: 1062.5).ok


def test_clock_is_read_inside_the_atomic_step(make_store):
    store = make_store()
    readings = []

    def clock():
        readings.append(1)
        return 5000.25

    result = store.window_acquire([WindowCheck("k2", 5, 1)], clock)
    assert result.ok and result.bucket == 5000 and result.now == pytest.approx(5000.25)
    assert readings == [1] or getattr(store, "server_time", False)


def test_ledger_is_exactly_once(make_store):
    store = make_store()
    assert store.ledger_reserve("x", "r1", 50, 100, 2000, 1000, None).ok
    first = store.ledger_commit("x", "r1", 40, 1001, None, strict=True)
    assert (first.ok, first.committed, first.state) == (True, 40, "ok")
    again = store.ledger_commit("x", "r1", 40, 1002, None, strict=True)
    assert (again.ok, again.committed, again.state) == (False, 40, "committed")
    assert store.ledger_commit("x", "r1", 40, 1002, None).committed == 40  # lax: still once
    assert store.ledger_release("x", "r1", 1003).state == "committed"
    assert store.ledger_reserve("x", "r2", 10, 100, 2000, 1003, None).ok
    assert store.ledger_release("x", "r2", 1004).ok
    assert store.ledger_release("x", "r2", 1004).state == "released"
    late = store.ledger_commit("x", "r2", 10, 1005, None, strict=True)
    assert (late.ok, late.committed, late.state) == (False, 40, "released")
    unknown = store.ledger_commit("x", "nope", 10, 1005, None, strict=True)
    assert (unknown.ok, unknown.committed, unknown.state) == (False, 40, "unknown")


def test_expired_lease_cannot_be_committed(make_store):
    store = make_store()
    assert store.ledger_reserve("e", "slow", 90, 100, lease_until=1010, now=1000,
                                expire_at=None).ok
    assert store.ledger_reserve("e", "other", 10, 100, 1100, now=1011, expire_at=None).ok
    late = store.ledger_commit("e", "slow", 90, 1012, None, strict=True)
    assert (late.ok, late.state, late.committed) == (False, "expired", 0)
    assert store.ledger_release("e", "slow", 1012).state == "expired"
    assert store.ledger_totals("e", 1013).reserved == 10


def test_async_twins_share_the_store(make_store):
    import asyncio

    store = make_store()

    async def run():
        ok = await store.awindow_acquire([WindowCheck("as", 2, 1)], 77)
        await store.awindow_acquire([WindowCheck("as", 2, 1)], 77)
        refused = await store.awindow_acquire([WindowCheck("as", 2, 1)], 77)
        await store.awindow_adjust("as", 77, -1)
        total = await store.awindow_sum("as", 77)
        held = await store.aledger_reserve("al", "r", 5, 10, 2000, 1000, None)
        done = await store.aledger_commit("al", "r", 3, 1001, None, strict=True)
        twice = await store.aledger_commit("al", "r", 3, 1001, None, strict=True)
        released = await store.aledger_release("al", "r", 1002)
        totals = await store.aledger_totals("al", 1003)
        if hasattr(store, "aclose"):
            await store.aclose()
        return ok, refused, total, held, done, twice, released, totals

    ok, refused, total, held, done, twice, released, totals = asyncio.run(run())
    assert ok.ok and not refused.ok and total == 1
    assert held.ok and done.committed == 3 and twice.state == "committed"
    assert released.state == "committed" and totals.committed == 3


def test_data_survives_reopening(make_store, store_kind):
    if store_kind == "memory":
        pytest.skip("memory does not persist")
    first = make_store()
    first.ledger_commit("keep", "r", 123, now=1000, expire_at=None)
    first.close()
    assert make_store().ledger_totals("keep", 1001).committed == 123


def test_money_units_round_trip():
    from decimal import Decimal

    assert to_units(Decimal("0.0000496")) == 49_600
    assert from_units(49_600) == Decimal("0.0000496")
    assert to_units(Decimal("1e-10"), reserve=True) == 1  # reservations round up


def test_ready_clients_and_cluster_urls(redis_url, redis_cluster_url):
    import asyncio

    import redis
    import redis.cluster

    from qwen_meter.limits.store import open_store

    for client in (redis.Redis.from_url(redis_url),
                   redis.cluster.RedisCluster.from_url("redis" + redis_cluster_url[13:])):
        store = open_store(client)
        assert store.cluster == isinstance(client, redis.cluster.RedisCluster)
        key = f"rl:{{ready-{id(client)}:m}}:req"
        assert store.window_acquire([WindowCheck(key, 1, 1)], 10).ok

        async def twin(store=store, key=key):
            refused = await store.awindow_acquire([WindowCheck(key, 1, 1)], 10)
            await store.aclose()
            return refused

        assert not asyncio.run(twin()).ok  # the async client reached the same server
        store.close()
    with pytest.raises(ValueError, match="store URL"):
        open_store("mysql://x")


def test_tombstones_are_forgotten_and_then_still_never_counted(make_store):
    from qwen_meter.limits.store.base import TOMBSTONE_SECONDS

    store = make_store()
    for n in range(50):
        store.ledger_reserve("g", f"r{n}", 1, None, lease_until=1010, now=1000, expire_at=None)
        store.ledger_commit("g", f"r{n}", 1, now=1001, expire_at=None, strict=True)
    later = 1010 + TOMBSTONE_SECONDS + 1
    again = store.ledger_commit("g", "r0", 1, now=later, expire_at=None, strict=True)
    assert (again.ok, again.state, again.committed) == (False, "unknown", 50)
    if hasattr(store, "_ledgers"):  # memory: nothing left to grow
        assert not store._ledgers["g"].settled and not store._ledgers["g"].forget


def test_memory_checks_spanning_lock_stripes_stay_atomic():
    """Keys of different hash tags live under different locks; one check over both takes both,
    so 16 threads can never admit more than the limit of either."""
    import threading

    from qwen_meter.limits.store import MemoryStore

    store = MemoryStore()
    checks = [WindowCheck("{a}:req", 50, 1), WindowCheck("{b}:tok", 10_000, 7)]
    admitted = []

    def worker():
        for _ in range(40):
            if store.window_acquire(checks, 100).ok:
                admitted.append(1)
            store.window_acquire([WindowCheck("{a}:req", 50, 0)], 100)  # the other stripe alone

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(admitted) == 50 == store.window_sum("{a}:req", 100)
    assert store.window_sum("{b}:tok", 100) == 350


def test_sqlite_window_keeps_only_its_61_seconds(tmp_path):
    """Old seconds are pruned when a key first writes a new second, so the file stays small
    however long a limiter runs (and the window still reads right)."""
    from qwen_meter.limits.store.sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "w.db")
    for second in range(1000, 1200, 7):
        assert store.window_acquire([WindowCheck("k", 10**9, 1), WindowCheck("j", 10**9, 2)],
                                    second).ok
    rows = store._db.execute("SELECT key, MIN(bucket), COUNT(*) FROM window GROUP BY key "
                             "ORDER BY key").fetchall()
    assert rows == [("j", 1140, 9), ("k", 1140, 9)]  # 1196 - 60 = 1136: seconds 1140..1196
    assert store.window_sum("k", 1196) == 9
    store.close()


def test_sqlite_connections_on_one_file_see_each_others_writes(tmp_path):
    """Each SQLite store keeps a copy of its window rows and reads nothing while no other
    connection has committed: a write by another store, a refund, or a bare sqlite3
    connection must each be seen by the next acquire, whose copy is then read again."""
    import sqlite3

    from qwen_meter.limits.store.sqlite import SQLiteStore

    path = tmp_path / "shared.db"
    a, b = SQLiteStore(path), SQLiteStore(path)
    check = [WindowCheck("req", 10, 1), WindowCheck("tok", 10**6, 100)]
    admitted = []
    for store in (a, a, a, b, a, b, b, a, a, a, b, a, a, b, b):  # quiet runs and switches
        admitted.append(store.window_acquire(check, 500).ok)
    assert admitted.count(True) == 10 and admitted[10:] == [False] * 5
    b.window_adjust("req", 500, -2)  # another connection refunds two requests
    assert [a.window_acquire(check, 500).ok for _ in range(3)] == [True, True, False]
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("UPDATE window SET amount = 0 WHERE key = 'tok'")  # and a bare connection
    assert a.window_sum("tok", 500) == 0
    assert a.window_acquire([WindowCheck("tok", 1000, 999)], 500).ok
    assert not b.window_acquire([WindowCheck("tok", 1000, 2)], 500).ok
    raw.execute("DELETE FROM window")
    assert [a.window_acquire(check, 501).ok for _ in range(11)] == [True] * 10 + [False]
    assert b.window_sum("req", 501) == a.window_sum("req", 501) == 10
    raw.close()
    a.close()
    b.close()
