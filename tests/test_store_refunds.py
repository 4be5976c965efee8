"""A limiter's refunds wait for the store's next operation (SQLite, Redis): what other processes
see and when, what this process sees, and that a refund lands exactly once.

Real SQLite files and a real redis-server (``redis_url``); each test checks the counts a store
answers or holds, not how they got there. No clock is asserted: the timer's bound is a liveness
check (the refund arrives), its figure is in docs/guides/limits.md and benchmarks/.
"""

from __future__ import annotations

import os
import random
import sqlite3
import time
import uuid

import pytest

from qwen_meter.base.errors import InvalidTimeout
from qwen_meter.limits.limiter.core import RateLimiter
from qwen_meter.limits.store.base import StoreUnavailable, WindowCheck
from qwen_meter.limits.store.refunds import RefundQueue

HUGE = 10**12
T = [WindowCheck("req", HUGE, 1), WindowCheck("tok", HUGE, 1000)]


def arrives(check, attempts: int = 600) -> bool:
    """True as soon as ``check()`` is (50 ms apart, about 30 s at most: a bound, not a clock)."""
    for _ in range(attempts):
        if check():
            return True
        time.sleep(0.05)
    return False


def sqlite_pair(path, **options):
    from qwen_meter.limits.store.sqlite import SQLiteStore

    return SQLiteStore(path, **options), SQLiteStore(path, **options)


# --- SQLite -----------------------------------------------------------------------------------

def test_sqlite_refund_is_seen_at_once_here_and_with_the_next_acquire_elsewhere(tmp_path):
    a, b = sqlite_pair(tmp_path / "w.db", refund_delay=3600)  # no timer within the test
    try:
        assert a.window_acquire(T, 500).ok
        a.window_settle("tok", 500, -600)
        assert a.window_sum("tok", 500) == 400  # this store's own read applies it first
        a.window_settle("tok", 500, -100)
        # Another connection still counts what the call reserved: more, never less.
        assert b.window_sum("tok", 500) == 400
        assert a.window_acquire(T, 500).ok  # the refund rides with this acquire's write
        assert b.window_sum("tok", 500) == 1300
        assert b.window_sum("req", 500) == 2
    finally:
        a.close()
        b.close()


def test_sqlite_refund_lands_by_itself_after_refund_delay(tmp_path):
    a, b = sqlite_pair(tmp_path / "w.db", refund_delay=0.05)
    try:
        assert a.window_acquire(T, 700).ok
        a.window_settle("tok", 700, -250)
        # Nothing else happens in a: its timer writes the refund.
        assert arrives(lambda: b.window_sum("tok", 700) == 750)
    finally:
        a.close()
        b.close()


def test_sqlite_close_writes_the_refunds_and_a_charge_never_waits(tmp_path):
    a, b = sqlite_pair(tmp_path / "w.db", refund_delay=3600)
    try:
        assert a.window_acquire(T, 800).ok
        a.window_settle("tok", 800, 300)  # a charge: at once
        assert b.window_sum("tok", 800) == 1300
        a.window_settle("tok", 800, -1300)
        assert b.window_sum("tok", 800) == 1300
        a.close()
        assert b.window_sum("tok", 800) == 0
    finally:
        b.close()


def test_sqlite_refund_delay_zero_writes_each_refund_at_once(tmp_path):
    a, b = sqlite_pair(tmp_path / "w.db", refund_delay=0)
    try:
        assert a.window_acquire(T, 900).ok
        a.window_settle("tok", 900, -999)
        assert b.window_sum("tok", 900) == 1
    finally:
        a.close()
        b.close()


def test_sqlite_refund_of_a_failed_transaction_waits_and_lands_once(tmp_path):
    """The file is locked when the acquire that carries a refund runs: the acquire fails, the
    refund is kept (not lost, not applied), and lands exactly once afterwards."""
    path = tmp_path / "w.db"
    a, b = sqlite_pair(path, refund_delay=3600, timeout=0.05)
    holder = sqlite3.connect(path, isolation_level=None, timeout=5)
    try:
        for _ in range(3):  # the third is quiet: it takes the refunds before it writes
            assert a.window_acquire(T, 1000).ok
        a.window_settle("tok", 1000, -400)
        holder.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreUnavailable):
            a.window_acquire(T, 1000)
        holder.execute("ROLLBACK")
        assert b.window_sum("tok", 1000) == 3000  # not applied by the failed acquire
        a.flush()
        assert b.window_sum("tok", 1000) == 2600
        a.flush()  # nothing left to apply a second time
        assert a.window_acquire(T, 1000).ok
        assert b.window_sum("tok", 1000) == 3600
    finally:
        holder.close()
        a.close()
        b.close()


def test_sqlite_refunds_of_a_failed_flush_or_read_are_kept_and_land_once(tmp_path):
    """A flush (the timer's write) and a read each take the refunds waiting, then write: when
    that write fails half-way (a trigger refuses it, as a full disk would), the refunds are
    given back, and land exactly once with the next write that succeeds."""
    path = tmp_path / "w.db"
    a, b = sqlite_pair(path, refund_delay=3600)
    other = sqlite3.connect(path, isolation_level=None, timeout=5)
    refuse = [f"CREATE TRIGGER no_{what} BEFORE {what} ON window "
              "BEGIN SELECT RAISE(ABORT, 'refused'); END" for what in ("INSERT", "UPDATE")]
    try:
        for _ in range(3):
            assert a.window_acquire(T, 1000).ok
        a.window_settle("tok", 1000, -400)
        for step in (a.flush, lambda: a.window_sum("tok", 1000)):
            for statement in refuse:
                other.execute(statement)
            with pytest.raises(StoreUnavailable):
                step()
            other.execute("DROP TRIGGER no_INSERT")
            other.execute("DROP TRIGGER no_UPDATE")
            assert b.window_sum("tok", 1000) == 3000  # not applied by the failed write
        assert a.window_sum("tok", 1000) == 2600
        a.flush()  # nothing left to apply a second time
        assert b.window_sum("tok", 1000) == 2600
    finally:
        other.close()
        a.close()
        b.close()


def test_sqlite_acquire_decides_on_the_file_when_another_connection_wrote(tmp_path):
    """A quiet acquire decides on the store's copy and writes only if nobody committed since:
    another connection's write in between must be counted, not overwritten or missed."""
    a, b = sqlite_pair(tmp_path / "w.db")
    try:
        limit = [WindowCheck("req", 5, 1)]
        assert a.window_acquire(limit, 1200).ok and a.window_acquire(limit, 1200).ok
        for _ in range(3):
            assert b.window_acquire(limit, 1200).ok
        assert not a.window_acquire(limit, 1200).ok  # 5 in the window: b's three counted
        assert a.window_sum("req", 1200) == b.window_sum("req", 1200) == 5
    finally:
        a.close()
        b.close()


def test_limiter_reconcile_on_sqlite_reaches_another_process_view(tmp_path):
    """Two limiters on one file (two processes' view): a reconcile's refund is seen by the
    other one once it lands, and by its own limiter at once."""
    url = f"sqlite:///{tmp_path / 'l.db'}"
    clock = lambda: 5000.5  # noqa: E731 - one fixed second
    mine = RateLimiter(url, limits={"m": (100, 10_000)}, smooth=False, clock=clock)
    theirs = RateLimiter(url, limits={"m": (100, 10_000)}, smooth=False, clock=clock)
    try:
        permit = mine.acquire("m", 9000)
        mine.reconcile(permit, 1000)
        assert mine.usage("m") == (1, 1000)
        assert arrives(lambda: theirs.usage("m") == (1, 1000))
        assert theirs.acquire("m", 9000, wait=False).tokens == 9000  # the refund let it in
    finally:
        mine.store.close()
        theirs.store.close()


def test_refund_delay_is_checked():
    from qwen_meter.limits.store.sqlite import SQLiteStore

    for bad in (-1, float("nan"), "soon"):
        with pytest.raises(InvalidTimeout, match="refund_delay"):
            SQLiteStore(":memory:", refund_delay=bad)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork() only")
def test_a_forked_child_drops_the_refunds_its_parent_will_write():
    queue = RefundQueue(3600, lambda: None)
    queue.add("tok", 1, -5)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report what it would write, never run atexit
        os.write(write, str(len(queue.take())).encode())
        os._exit(0)
    os.close(write)
    child_saw = os.read(read, 16).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert child_saw == "0"
    assert queue.take() == [(-5, "tok", 1)]
    queue.close()


def test_a_read_waits_for_refunds_other_threads_have_in_flight():
    import threading

    queue = RefundQueue(3600, lambda: None)
    queue.add("tok", 1, -5)
    refunds, ticket = queue.take_in_flight()
    assert refunds == [(-5, "tok", 1)] and queue.in_flight
    done = threading.Event()

    def reader() -> None:
        queue.wait_landed(queue.next_ticket, None)
        done.set()

    thread = threading.Thread(target=reader)
    thread.start()
    assert not done.wait(0.2)  # still in flight: the reader waits
    queue.landed(ticket)
    thread.join()
    assert done.is_set() and not queue.in_flight
    queue.close()


# --- Redis ------------------------------------------------------------------------------------

def redis_store(url, **options):
    from qwen_meter.limits.store.redis import RedisStore

    return RedisStore(url, prefix=f"refund-{uuid.uuid4().hex[:6]}:", server_time=False,
                      **options)


def test_redis_refund_rides_with_the_next_script(redis_url):
    a = redis_store(redis_url, refund_delay=3600)
    b = redis_store(redis_url)
    b.prefix = a.prefix  # the same windows, on other connections
    try:
        checks = [WindowCheck("{m}:req", HUGE, 1), WindowCheck("{m}:tok", HUGE, 1000)]
        assert a.window_acquire(checks, 2_000_000).ok
        a.window_settle("{m}:tok", 2_000_000, -700)
        assert b.window_sum("{m}:tok", 2_000_000) == 1000  # not sent yet: more, never less
        assert a.window_sum("{m}:tok", 2_000_000) == 300  # sent ahead of this store's read
        a.window_settle("{m}:tok", 2_000_000, -100)
        a.window_settle("{o}:tok", 2_000_000, -1)  # another model's window: ahead, as ADJUST
        assert a.window_acquire(checks, 2_000_000).ok  # folded into the acquire's own script
        assert b.window_sum("{m}:tok", 2_000_000) == 1200
        a.window_settle("{m}:tok", 2_000_000, 50)  # a charge: at once
        assert b.window_sum("{m}:tok", 2_000_000) == 1250
        a.window_settle("{m}:tok", 2_000_000, -250)
        a.close()  # close sends what waits
        assert b.window_sum("{m}:tok", 2_000_000) == 1000
    finally:
        b.close()


def test_redis_refund_lands_by_itself_after_refund_delay(redis_url):
    a = redis_store(redis_url, refund_delay=0.05)
    b = redis_store(redis_url)
    b.prefix = a.prefix
    try:
        assert a.window_acquire([WindowCheck("{m}:tok", HUGE, 900)], 2_100_000).ok
        a.window_settle("{m}:tok", 2_100_000, -300)
        assert arrives(lambda: b.window_sum("{m}:tok", 2_100_000) == 600)
    finally:
        a.close()
        b.close()


def test_redis_refunds_folded_into_the_acquire_equal_an_adjust_before_it(redis_url):
    """The acquire script applies refunds to its own keys from its arguments (the common one
    in the figures it already read): every outcome and every hash field must be what an
    ADJUST just before the acquire would have left, through clamps, prunes, idle resets,
    refusals and refunds to seconds long gone."""
    rng = random.Random(7)
    keys = ["{x}:r", "{x}:t"]
    for _ in range(30):
        folded = redis_store(redis_url, refund_delay=3600)
        direct = redis_store(redis_url, refund_delay=0)
        second = 1000
        try:
            for _ in range(25):
                second += rng.choice([0, 0, 0, 1, 2, -3, 40, 70, 130])
                limit = rng.choice([3, 50, 10**6])
                checks = [WindowCheck(keys[0], limit, 1),
                          WindowCheck(keys[1], limit * 100, rng.randint(0, 300),
                                      rng.choice([None, 20]))]
                for _ in range(rng.choice([0, 0, 1, 2])):
                    key = rng.choice([*keys, "{x}:other"])
                    at = second - rng.choice([0, 0, 1, 5, 61, 200])
                    delta = -rng.randint(1, 400)
                    folded.window_settle(key, at, delta)
                    direct.window_settle(key, at, delta)
                got = folded.window_acquire(checks, second)
                want = direct.window_acquire(checks, second)
                assert (got.ok, got.retry_buckets, got.refused_key, got.bucket) == \
                    (want.ok, want.retry_buckets, want.refused_key, want.bucket)
                for key in keys:
                    assert folded.redis.hgetall(folded._window_key(key)) == \
                        direct.redis.hgetall(direct._window_key(key))
        finally:
            folded.close()
            direct.close()


def test_redis_read_sees_a_refund_the_server_first_refused_with_noscript(redis_url):
    """The server lost the adjust script (flushed) but has the sum script: the refund sent
    ahead of the sum is refused, run again by source after it; the sum must still count it."""
    store = redis_store(redis_url, refund_delay=3600)
    try:
        assert store.window_acquire([WindowCheck("{n}:tok", HUGE, 500)], 2_200_000).ok
        with store._guard():
            store.redis.script_flush()
        assert store.window_sum("{n}:tok", 2_200_000) == 500  # loads the sum script again
        store.window_settle("{n}:tok", 2_200_000, -200)
        assert store.window_sum("{n}:tok", 2_200_000) == 300
    finally:
        store.close()


def test_redis_window_keeps_only_its_61_seconds(redis_url):
    store = redis_store(redis_url)
    try:
        for second in range(1000, 1200, 3):
            assert store.window_acquire([WindowCheck("{p}:k", HUGE, 2)], second).ok
        fields = {k.decode(): int(v) for k, v in
                  store.redis.hgetall(store._window_key("{p}:k")).items()}
        seconds = sorted(int(k) for k in fields if k.isdigit())
        assert seconds[0] == 1138 and seconds[-1] == 1198 and len(seconds) == 21
        assert (fields["m"], fields["t"], fields["s"]) == (1138, 1198, 42)
        assert store.window_sum("{p}:k", 1198) == 42
    finally:
        store.close()


def test_sqlite_refunds_folded_into_acquires_equal_an_adjust_before_each(tmp_path):
    """The quiet acquire (one statement) and the full transaction fold refunds into their
    own write where the copy allows: every outcome and every row must be what an adjust
    just before each acquire leaves, through new seconds, prunes, refusals and refunds to
    seconds the window no longer holds."""
    from qwen_meter.limits.store.sqlite import SQLiteStore

    rng = random.Random(11)
    folded = SQLiteStore(tmp_path / "folded.db", refund_delay=3600)
    direct = SQLiteStore(tmp_path / "direct.db", refund_delay=0)
    try:
        second = 1000
        for _ in range(400):
            second += rng.choice([0, 0, 0, 0, 1, 2, -3, 40, 70])
            limit = rng.choice([5, 60, 10**6])
            checks = [WindowCheck("r", limit, 1),
                      WindowCheck("t", limit * 100, rng.randint(0, 300), rng.choice([None, 40]))]
            for _ in range(rng.choice([0, 1, 1, 2])):
                key = rng.choice(["r", "t", "other"])
                at = second - rng.choice([0, 0, 0, 1, 5, 61])
                delta = -rng.randint(1, 300)
                folded.window_settle(key, at, delta)
                direct.window_settle(key, at, delta)
            got = folded.window_acquire(checks, second)
            want = direct.window_acquire(checks, second)
            assert (got.ok, got.retry_buckets, got.refused_key, got.bucket) == \
                (want.ok, want.retry_buckets, want.refused_key, want.bucket)
            rows = "SELECT key, bucket, amount FROM window ORDER BY key, bucket"
            assert folded._db.execute(rows).fetchall() == direct._db.execute(rows).fetchall()
    finally:
        folded.close()
        direct.close()


def test_redis_read_waits_for_a_refund_another_thread_carries(redis_url):
    """Thread 1's acquire has taken the waiting refund and is about to send it; a sum in
    thread 2 (on another connection) must not answer before that refund has landed."""
    import threading

    store = redis_store(redis_url, refund_delay=3600)
    try:
        checks = [WindowCheck("{w}:tok", HUGE, 800)]
        assert store.window_acquire(checks, 2_300_000).ok
        store.window_settle("{w}:tok", 2_300_000, -300)
        carrying, go = threading.Event(), threading.Event()
        send = store._direct.evalsha_after

        def held_send(sha, keys, args, ahead):
            if len(args) > 4:  # the acquire carrying the refund in its arguments
                carrying.set()
                go.wait()
            return send(sha, keys, args, ahead)

        store._direct.evalsha_after = held_send
        carrier = threading.Thread(target=store.window_acquire, args=(checks, 2_300_000))
        carrier.start()
        assert carrying.wait(30)
        releaser = threading.Timer(0.3, go.set)
        releaser.start()
        assert store.window_sum("{w}:tok", 2_300_000) == 1300  # 800 + 800 - 300
        carrier.join()
        releaser.join()
    finally:
        store.close()


def test_a_short_refund_delay_is_not_held_up_by_a_long_one():
    """One flusher thread serves every store: a store with a short ``refund_delay`` armed
    after one with a long delay must still be written on time (the thread wakes for it)."""
    import threading

    written = threading.Event()
    slow = RefundQueue(3600, lambda: None)
    slow.add("tok", 1, -1)
    quick = RefundQueue(0.05, written.set)
    quick.add("tok", 1, -1)
    assert written.wait(30)
    slow.close()
    quick.close()
