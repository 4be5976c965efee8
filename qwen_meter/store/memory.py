"""The in-memory store: one process, every operation under one lock."""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .base import WINDOW_BUCKETS, AcquireResult, LedgerResult, Store, WindowCheck, plan_acquire


class MemoryStore(Store):
    """Counters in dictionaries. Safe across threads; asyncio tasks never wait inside it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[str, dict[int, int]] = {}
        self._committed: dict[str, int] = {}
        self._reserved: dict[str, dict[str, tuple[int, float]]] = {}
        self._expiry: dict[str, float] = {}

    def _buckets(self, key: str, bucket: int) -> list[int]:
        window = self._windows.setdefault(key, {})
        oldest = bucket - WINDOW_BUCKETS + 1
        for stale in [b for b in window if b < oldest]:
            del window[stale]
        return [window.get(b, 0) for b in range(oldest, bucket + 1)]

    def window_acquire(self, checks: Sequence[WindowCheck], bucket: int) -> AcquireResult:
        with self._lock:
            result = plan_acquire(checks, [self._buckets(c.key, bucket) for c in checks])
            if result.ok:
                for check in checks:
                    window = self._windows[check.key]
                    window[bucket] = window.get(bucket, 0) + check.amount
            return result

    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        with self._lock:
            window = self._windows.get(key)
            if window is not None and bucket in window:
                window[bucket] = max(0, window[bucket] + delta)

    def window_sum(self, key: str, bucket: int) -> int:
        with self._lock:
            return sum(self._buckets(key, bucket))

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
