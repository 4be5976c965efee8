"""The store interface: sliding windows for the limiter, a reservation ledger for budgets.

**Windows** count amounts per key in one-second buckets. ``window_acquire`` checks every
:class:`WindowCheck` against the last :data:`WINDOW_BUCKETS` buckets (and optionally the current
second alone) and, only if all pass, adds each amount to the current bucket — all or nothing.
61 buckets cover any 60-second window however it is placed, so no 60-second window can hold
more than the limit. ``window_adjust`` corrects an earlier bucket (reconcile, release).

**Ledgers** hold money per key as whole *units* (:data:`UNIT` = 1e-9 of a currency unit):
a committed total and leased reservations. ``ledger_reserve`` admits a reservation only if
committed + live reservations + amount stays within the limit; ``ledger_commit`` turns a
reservation into committed spend; ``ledger_release`` drops it. Reservations whose lease has
run out (a crashed caller) no longer count and are purged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import NamedTuple

from ..errors import QwenMeterError

#: Buckets summed by a window check: the current second and the 60 before it.
WINDOW_BUCKETS = 61
#: Money is stored as whole multiples of this (exact for prices with up to 3 decimals per 1M).
UNIT = Decimal("1e-9")


class StoreUnavailable(QwenMeterError):
    """The shared store (Redis, SQLite) could not be reached or answered in time."""


def to_units(amount: Decimal, *, reserve: bool = False) -> int:
    """Money as whole units; reservations round up so they never under-cover."""
    rounding = ROUND_CEILING if reserve else ROUND_HALF_EVEN
    return int((amount / UNIT).to_integral_value(rounding=rounding))


def from_units(units: int) -> Decimal:
    return (Decimal(units) * UNIT).normalize()


class WindowCheck(NamedTuple):
    """Add ``amount`` to ``key`` if the last 61 seconds stay within ``limit`` and, when
    ``per_second`` is set, the current second stays within it (a first arrival in an empty
    second is always let through, so one large request is never blocked for good)."""

    key: str
    limit: int
    amount: int
    per_second: int | None = None


@dataclass(frozen=True)
class AcquireResult:
    """``ok``, or the key that refused and in how many whole seconds it may pass.

    ``bucket`` is the second the store used when it keeps its own clock (Redis ``TIME``).
    """

    ok: bool
    retry_buckets: int = 0
    refused_key: str | None = None
    bucket: int | None = None


@dataclass(frozen=True)
class LedgerResult:
    """Totals of a ledger after an operation (units)."""

    ok: bool
    committed: int
    reserved: int


def plan_acquire(checks: Sequence[WindowCheck], sums: Sequence[Sequence[int]]
                 ) -> AcquireResult:
    """Decide a window acquire from each key's last 61 bucket values (oldest first).

    Shared by the stores that compute in Python; the Redis script does the same in Lua.
    """
    for check, buckets in zip(checks, sums, strict=True):
        current = buckets[-1]
        if check.per_second is not None and current > 0 \
                and current + check.amount > check.per_second:
            return AcquireResult(False, 1, check.key)
        total = sum(buckets)
        if total + check.amount > check.limit:
            # Buckets fall out of the window oldest first; find the first second it fits.
            for k, value in enumerate(buckets[:-1], start=1):
                total -= value
                if total + check.amount <= check.limit:
                    return AcquireResult(False, k, check.key)
            return AcquireResult(False, WINDOW_BUCKETS, check.key)
    return AcquireResult(True)


class Store(ABC):
    """Atomic operations on shared counters; every backend passes the same test suite."""

    @abstractmethod
    def window_acquire(self, checks: Sequence[WindowCheck], bucket: int) -> AcquireResult:
        """All-or-nothing: add every check's amount to ``bucket`` if every check passes."""

    @abstractmethod
    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        """Add ``delta`` (negative to refund) to an earlier bucket, if still in the window."""

    @abstractmethod
    def window_sum(self, key: str, bucket: int) -> int:
        """Sum of the 61 buckets ending at ``bucket``."""

    @abstractmethod
    def ledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                       lease_until: float, now: float, expire_at: float | None) -> LedgerResult:
        """Reserve ``amount`` if committed + live reservations + amount <= ``limit``
        (``None``: no limit, always reserve). ``expire_at`` bounds the whole ledger's life."""

    @abstractmethod
    def ledger_commit(self, key: str, reservation: str, amount: int, now: float,
                      expire_at: float | None) -> LedgerResult:
        """Drop the reservation (if still there) and add ``amount`` to the committed total."""

    @abstractmethod
    def ledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        """Drop the reservation."""

    @abstractmethod
    def ledger_totals(self, key: str, now: float) -> LedgerResult:
        """Committed total and live reservations."""

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to close
        """Release connections and files."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
