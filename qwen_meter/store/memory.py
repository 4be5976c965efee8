"""The in-memory store: one process, every operation under one lock."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Sequence

from .base import WINDOW_BUCKETS, AcquireResult, LedgerResult, Store, WindowCheck, plan_acquire


class _Window:
    """One key's buckets with a running total; stale buckets leave from the front."""

    __slots__ = ("buckets", "order", "total")

    def __init__(self) -> None:
        self.buckets: dict[int, int] = {}
        self.order: deque[int] = deque()
        self.total = 0

    def prune(self, oldest: int) -> None:
        order, buckets = self.order, self.buckets
        while order and order[0] < oldest:
            self.total -= buckets.pop(order.popleft())

    def values(self, bucket: int) -> list[int]:
        return [self.buckets.get(b, 0) for b in range(bucket - WINDOW_BUCKETS + 1, bucket + 1)]


class MemoryStore(Store):
    """Counters in dictionaries. Safe across threads; asyncio tasks never wait inside it.

    Each key keeps a running total, so an acquire costs O(1) however busy the window is.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._pending: deque[tuple[str, int, int]] = deque()
        self._committed: dict[str, int] = {}
        self._reserved: dict[str, dict[str, tuple[int, float]]] = {}
        self._expiry: dict[str, float] = {}

    def _window(self, key: str, bucket: int) -> _Window:
        window = self._windows.get(key)
        if window is None:
            window = self._windows[key] = _Window()
        else:
            window.prune(bucket - WINDOW_BUCKETS + 1)
        return window

    def window_acquire(self, checks: Sequence[WindowCheck], bucket: int) -> AcquireResult:
        oldest = bucket - WINDOW_BUCKETS + 1
        with self._lock:
            if self._pending:
                self._apply_pending()
            windows = []
            for check in checks:
                window = self._windows.get(check.key)
                if window is None:
                    window = self._windows[check.key] = _Window()
                elif window.order and window.order[0] < oldest:
                    window.prune(oldest)
                windows.append(window)
            for check, window in zip(checks, windows, strict=True):
                current = window.buckets.get(bucket, 0)
                if (check.per_second is not None and current > 0
                        and current + check.amount > check.per_second) \
                        or window.total + check.amount > check.limit:
                    return plan_acquire(checks, [w.values(bucket) for w in windows])
            for check, window in zip(checks, windows, strict=True):
                buckets = window.buckets
                if bucket in buckets:
                    buckets[bucket] += check.amount
                else:
                    # A clock that steps back appends out of order; the total only over-counts
                    # until that bucket reaches the front, so limits still hold.
                    buckets[bucket] = check.amount
                    window.order.append(bucket)
                window.total += check.amount
            return AcquireResult(True)

    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        # deque.append is atomic: reconciles never wait for the lock. The next acquire (or
        # sum) applies them before it looks at the window, so no check ever misses one.
        self._pending.append((key, bucket, delta))

    def _apply_pending(self) -> None:
        pending, windows = self._pending, self._windows
        while pending:
            key, bucket, delta = pending.popleft()
            window = windows.get(key)
            if window is not None and bucket in window.buckets:
                value = window.buckets[bucket]
                new = max(0, value + delta)
                window.buckets[bucket] = new
                window.total += new - value

    def window_sum(self, key: str, bucket: int) -> int:
        with self._lock:
            self._apply_pending()
            return self._window(key, bucket).total

    def _live(self, key: str, now: float) -> dict[str, tuple[int, float]]:
        if key in self._expiry and self._expiry[key] <= now:
            self._committed.pop(key, None)
            self._reserved.pop(key, None)
            del self._expiry[key]
        live = self._reserved.setdefault(key, {})
        for rid in [r for r, (_, lease) in live.items() if lease <= now]:
            del live[rid]
        return live

    def _totals(self, key: str, live: dict[str, tuple[int, float]], ok: bool) -> LedgerResult:
        return LedgerResult(ok, self._committed.get(key, 0), sum(a for a, _ in live.values()))

    def _touch(self, key: str, expire_at: float | None) -> None:
        if expire_at is not None:
            self._expiry[key] = expire_at

    def ledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                       lease_until: float, now: float, expire_at: float | None) -> LedgerResult:
        with self._lock:
            live = self._live(key, now)
            committed = self._committed.get(key, 0)
            reserved = sum(a for a, _ in live.values())
            if limit is not None and committed + reserved + amount > limit:
                return LedgerResult(False, committed, reserved)
            live[reservation] = (amount, lease_until)
            self._touch(key, expire_at)
            return LedgerResult(True, committed, reserved + amount)

    def ledger_commit(self, key: str, reservation: str, amount: int, now: float,
                      expire_at: float | None) -> LedgerResult:
        with self._lock:
            live = self._live(key, now)
            live.pop(reservation, None)
            self._committed[key] = self._committed.get(key, 0) + amount
            self._touch(key, expire_at)
            return self._totals(key, live, True)

    def ledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        with self._lock:
            live = self._live(key, now)
            live.pop(reservation, None)
            return self._totals(key, live, True)

    def ledger_totals(self, key: str, now: float) -> LedgerResult:
        with self._lock:
            return self._totals(key, self._live(key, now), True)
