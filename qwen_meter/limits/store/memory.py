"""The in-memory store: one process, safe across threads and asyncio tasks (which never wait
inside it: every operation is a few dictionary steps under a short lock)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence
from typing import TypeAlias

from .base import (
    COMMITTED,
    EXPIRED,
    OK,
    REFUSED,
    RELEASED,
    TOMBSTONE_SECONDS,
    UNKNOWN,
    WINDOW_BUCKETS,
    AcquireResult,
    LedgerResult,
    Store,
    When,
    WindowCheck,
    hash_tag,
    plan_acquire,
)


class _Window:
    """One key's buckets (written in non-decreasing order) with a running total; ``latest`` is
    the newest second any operation has looked at (the clamp, see base.py)."""

    __slots__ = ("buckets", "latest", "order", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.order: deque[int] = deque()
        self.total = 0
        self.latest = -(2**62)

    def evict(self, oldest: int) -> None:
        """Drop the buckets older than ``oldest`` (a new second's first call does this)."""
        order, buckets = self.order, self.buckets
        while order and order[0] < oldest:
            self.total -= buckets.pop(order.popleft())

    def values(self, bucket: int) -> list[int]:
        return [self.buckets.get(b, 0) for b in range(bucket - WINDOW_BUCKETS + 1, bucket + 1)]


class _AllOf:
    """Several stripe locks held together (acquired in a fixed order)."""

    __slots__ = ("locks",)

    def __init__(self, locks: list[threading.Lock]) -> None:
        self.locks = locks

    def __enter__(self) -> None:
        for lock in self.locks:
            lock.acquire()

    def __exit__(self, *exc: object) -> None:
        for lock in reversed(self.locks):
            lock.release()


_Locks: TypeAlias = "threading.Lock | _AllOf"  # a string: threading.Lock is a factory


class _Ledger:
    __slots__ = ("committed", "expire_at", "forget", "live", "settled")

    def __init__(self) -> None:
        self.committed = 0
        self.live: dict[str, tuple[int, float]] = {}
        self.settled: dict[str, tuple[str, float]] = {}  # id -> (state, forget at)
        # (forget at, id) in about that order (leases are mostly of one length): forgetting
        # pops from the front, so an operation never scans every tombstone.
        self.forget: deque[tuple[float, str]] = deque()
        self.expire_at: float | None = None

    def tombstone(self, rid: str, state: str, forget_at: float) -> None:
        self.settled[rid] = (state, forget_at)
        self.forget.append((forget_at, rid))


class MemoryStore(Store):
    """Counters in dictionaries.

    Locks are striped: one per hash tag (the limiter tags each (account, model), so its request
    and token windows share one) and one per ledger, so threads working on different models or
    budgets never queue behind each other; the work done under a lock is a handful of dict
    operations (an acquire is O(1) however busy the window is).
    """

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._windows: dict[str, _Window] = {}
        self._ledgers: dict[str, _Ledger] = {}
        self._plans: dict[tuple[str, ...], tuple[_Locks, list[_Window]]] = {}
        self._adjusters: dict[str, tuple[threading.Lock, _Window]] = {}

    def _lock(self, group: str) -> threading.Lock:
        lock = self._locks.get(group)
        if lock is None:
            lock = self._locks.setdefault(group, threading.Lock())  # atomic: one winner
        return lock

    def _group(self, keys: tuple[str, ...]) -> tuple[_Locks, list[_Window]]:
        """The lock(s) and windows for a set of keys, looked up once and cached. Each window
        belongs to the stripe of its hash tag (untagged keys share one); a check spanning
        several stripes takes them all, in one global order (no deadlock)."""
        plan = self._plans.get(keys)
        if plan is None:
            locks = {id(lock): lock for lock in map(self._stripe, keys)}
            ordered = [locks[i] for i in sorted(locks)]
            lock: _Locks = ordered[0] if len(ordered) == 1 else _AllOf(ordered)
            windows = [self._windows.setdefault(k, _Window()) for k in keys]
            plan = self._plans.setdefault(keys, (lock, windows))
        return plan

    def _stripe(self, key: str) -> threading.Lock:
        """The lock of a window key's stripe: one per hash tag (untagged keys share one)."""
        return self._lock(f"w:{hash_tag(key) or ''}")

    def _adjuster(self, key: str) -> tuple[threading.Lock, _Window] | None:
        """The stripe lock and window of one key (None: the key was never acquired)."""
        entry = self._adjusters.get(key)
        if entry is None:
            window = self._windows.get(key)
            if window is None:
                return None
            entry = self._adjusters.setdefault(key, (self._stripe(key), window))
        return entry

    # Why the window code below is written out in straight lines: under the GIL, a thread can
    # only be switched out at a call or a backward jump. The code run while a stripe lock is
    # held has neither on its common path (no loop, no method call, no clock read), so a
    # thread never sleeps holding the lock and 8 threads do not queue behind each other (a
    # lock convoy made 8 threads cost 2.7 x one). Only a new second's first call evicts old
    # buckets in a loop, and a refusal computes its retry time with calls.

    def window_acquire(self, checks: Sequence[WindowCheck], bucket: When) -> AcquireResult:
        # The clock is read just before the lock: the wait for it is a few microseconds and
        # holds no I/O, and the clamp to the newest second used (see base.py) keeps the
        # window exact whatever second a delayed reader brings.
        now: float | None = None
        if callable(bucket):
            now = bucket()
            second = int(now // 1)
        else:
            second = bucket
        keys = tuple([c.key for c in checks])
        plan = self._group(keys)
        # One key twice adds twice: the loop does that, the short path would not.
        if type(plan[0]) is not _AllOf and (len(keys) == 1
                                            or (len(keys) == 2 and keys[0] != keys[1])):
            return self._acquire_short(checks, plan, second, now)
        return self._acquire_any(checks, plan, second, now)

    def _acquire_short(self, checks: Sequence[WindowCheck], plan: tuple[_Locks, list[_Window]],
                       second: int, now: float | None) -> AcquireResult:
        """One or two windows under one stripe lock (the limiter's requests and tokens):
        the same steps as :meth:`_acquire_any`, written out without a loop or a call."""
        lock, windows = plan
        _, limit_a, amount_a, per_second_a = checks[0]
        a = windows[0]
        if len(checks) == 2:
            _, limit_b, amount_b, per_second_b = checks[1]
            b: _Window | None = windows[1]
        else:
            limit_b, amount_b, per_second_b, b = 0, 0, None, None
        sums: list[list[int]] = []
        with lock:
            if a.latest > second:
                second = a.latest
            if b is not None and b.latest > second:
                second = b.latest
            a.latest = second
            oldest = second - WINDOW_BUCKETS + 1
            if a.order and a.order[0] < oldest:
                a.evict(oldest)
            buckets_a = a.buckets
            has_a = second in buckets_a
            current_a = buckets_a[second] if has_a else 0
            ok = a.total + amount_a <= limit_a and (
                per_second_a is None or not current_a or current_a + amount_a <= per_second_a)
            if b is not None:
                b.latest = second
                if b.order and b.order[0] < oldest:
                    b.evict(oldest)
                buckets_b = b.buckets
                has_b = second in buckets_b
                current_b = buckets_b[second] if has_b else 0
                ok = ok and b.total + amount_b <= limit_b and (
                    per_second_b is None or not current_b
                    or current_b + amount_b <= per_second_b)
                if ok:
                    buckets_b[second] = current_b + amount_b
                    b.total += amount_b
                    if not has_b:
                        b.order.append(second)
            if ok:
                buckets_a[second] = current_a + amount_a
                a.total += amount_a
                if not has_a:
                    a.order.append(second)
            else:
                sums = [w.values(second) for w in windows]
        # Built after the lock is let go: a constructor is a call.
        if ok:
            return AcquireResult(True, 0, None, second, now)
        return self._refused(checks, sums, second, now)

    def _acquire_any(self, checks: Sequence[WindowCheck], plan: tuple[_Locks, list[_Window]],
                     second: int, now: float | None) -> AcquireResult:
        lock, windows = plan
        sums: list[list[int]] = []
        with lock:
            for window in windows:
                if window.latest > second:
                    second = window.latest
            oldest = second - WINDOW_BUCKETS + 1
            for window in windows:  # the newest second seen, admitted or not (see base.py)
                window.latest = second
                window.evict(oldest)
            for check, window in zip(checks, windows, strict=True):
                current = window.buckets.get(second, 0)
                if (check.per_second is not None and current > 0
                        and current + check.amount > check.per_second) \
                        or window.total + check.amount > check.limit:
                    sums = [w.values(second) for w in windows]
                    break
            else:
                for check, window in zip(checks, windows, strict=True):
                    buckets = window.buckets
                    if second in buckets:
                        buckets[second] += check.amount
                    else:
                        buckets[second] = check.amount
                        window.order.append(second)
                    window.total += check.amount
        if not sums:
            return AcquireResult(True, 0, None, second, now)
        return self._refused(checks, sums, second, now)

    @staticmethod
    def _refused(checks: Sequence[WindowCheck], sums: list[list[int]], second: int,
                 now: float | None) -> AcquireResult:
        planned = plan_acquire(checks, sums, second)
        return AcquireResult(False, planned.retry_buckets, planned.refused_key, second, now)

    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        entry = self._adjuster(key)
        if entry is None:
            return
        lock, window = entry
        with lock:  # straight-line too (see above)
            buckets = window.buckets
            if bucket in buckets:  # a bucket already out of the window needs no correction
                value = buckets[bucket]
                new = value + delta
                if new < 0:
                    new = 0
                buckets[bucket] = new
                window.total += new - value

    def window_sum(self, key: str, bucket: int) -> int:
        lock, (window,) = self._group((key,))
        with lock:  # the window as the next acquire sees it: ending at the clamped second
            if bucket > window.latest:
                window.latest = bucket
            window.evict(window.latest - WINDOW_BUCKETS + 1)
            return window.total

    # --- ledgers ----------------------------------------------------------------------------

    def _ledger(self, key: str, now: float) -> _Ledger:
        """The ledger (started over if its period ended), with dead leases turned to
        tombstones and old tombstones forgotten. Call under the ledger's lock."""
        ledger = self._ledgers.get(key)
        if ledger is None or (ledger.expire_at is not None and ledger.expire_at <= now):
            ledger = self._ledgers[key] = _Ledger()
        live, settled, forget = ledger.live, ledger.settled, ledger.forget
        for rid in [r for r, (_, lease) in live.items() if lease <= now]:
            ledger.tombstone(rid, EXPIRED, live.pop(rid)[1] + TOMBSTONE_SECONDS)
        while forget and forget[0][0] <= now:
            _, rid = forget.popleft()
            entry = settled.get(rid)
            if entry is not None and entry[1] <= now:
                del settled[rid]
        return ledger

    @staticmethod
    def _result(ledger: _Ledger, ok: bool, state: str) -> LedgerResult:
        return LedgerResult(ok, ledger.committed, sum(a for a, _ in ledger.live.values()), state)

    @staticmethod
    def _touch(ledger: _Ledger, expire_at: float | None) -> None:
        if expire_at is not None:
            ledger.expire_at = expire_at

    def ledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                       lease_until: float, now: float, expire_at: float | None) -> LedgerResult:
        with self._lock(f"l:{key}"):
            ledger = self._ledger(key, now)
            if reservation in ledger.live:  # the same id again: already held
                return self._result(ledger, True, OK)
            if reservation in ledger.settled:
                return self._result(ledger, False, ledger.settled[reservation][0])
            reserved = sum(a for a, _ in ledger.live.values())
            if limit is not None and ledger.committed + reserved + amount > limit:
                return LedgerResult(False, ledger.committed, reserved, REFUSED)
            ledger.live[reservation] = (amount, lease_until)
            self._touch(ledger, expire_at)
            return LedgerResult(True, ledger.committed, reserved + amount, OK)

    def ledger_commit(self, key: str, reservation: str, amount: int, now: float,
                      expire_at: float | None, *, strict: bool = False) -> LedgerResult:
        with self._lock(f"l:{key}"):
            ledger = self._ledger(key, now)
            held = ledger.live.pop(reservation, None)
            if held is not None:
                state = OK
                forget = held[1] + TOMBSTONE_SECONDS
            else:
                state, _ = ledger.settled.get(reservation, (UNKNOWN, 0.0))
                if state in (COMMITTED, RELEASED) or strict:
                    return self._result(ledger, False, state)
                forget = now + TOMBSTONE_SECONDS
            ledger.committed += amount
            ledger.tombstone(reservation, COMMITTED, forget)
            self._touch(ledger, expire_at)
            return self._result(ledger, True, state)

    def ledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        with self._lock(f"l:{key}"):
            ledger = self._ledger(key, now)
            held = ledger.live.pop(reservation, None)
            if held is None:
                state, _ = ledger.settled.get(reservation, (UNKNOWN, 0.0))
                return self._result(ledger, False, state)
            ledger.tombstone(reservation, RELEASED, held[1] + TOMBSTONE_SECONDS)
            return self._result(ledger, True, OK)

    def ledger_totals(self, key: str, now: float) -> LedgerResult:
        with self._lock(f"l:{key}"):
            return self._result(self._ledger(key, now), True, OK)

    # Nothing here blocks for long: the async twins run inline on the event loop.

    async def awindow_acquire(self, checks: Sequence[WindowCheck], bucket: When
                              ) -> AcquireResult:
        return self.window_acquire(checks, bucket)

    async def awindow_adjust(self, key: str, bucket: int, delta: int) -> None:
        self.window_adjust(key, bucket, delta)

    async def awindow_sum(self, key: str, bucket: int) -> int:
        return self.window_sum(key, bucket)

    async def aledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                              lease_until: float, now: float, expire_at: float | None
                              ) -> LedgerResult:
        return self.ledger_reserve(key, reservation, amount, limit, lease_until, now, expire_at)

    async def aledger_commit(self, key: str, reservation: str, amount: int, now: float,
                             expire_at: float | None, *, strict: bool = False) -> LedgerResult:
        return self.ledger_commit(key, reservation, amount, now, expire_at, strict=strict)

    async def aledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        return self.ledger_release(key, reservation, now)

    async def aledger_totals(self, key: str, now: float) -> LedgerResult:
        return self.ledger_totals(key, now)
