"""The store interface: sliding windows for the limiter, a reservation ledger for budgets.

**Windows** count amounts per key in one-second buckets. ``window_acquire`` checks every
:class:`WindowCheck` against the last :data:`WINDOW_BUCKETS` buckets (and optionally the current
second alone) and, only if all pass, adds each amount to the current bucket — all or nothing, in
one atomic step. 61 buckets cover any 60-second window however it is placed, so no 60-second
window can hold more than the limit. ``window_adjust`` corrects an earlier bucket (reconcile,
release).

*Which* second is current is decided by the store, never by the caller beforehand: SQLite and
Redis read the clock (a callable; Redis uses its own ``TIME``) inside their transaction or
script (SQLite's quiet acquire just before its one-statement transaction, which writes nothing
if another connection committed meanwhile), the memory store just before its lock (held for
microseconds, with no I/O), and then
the second is clamped, inside the atomic step, up to the newest one any operation on those keys
has used so far (admitted, refused or summed; it is recorded per key). The clamp is what
makes the window correct for any interleaving and any clock: a caller delayed after reading its
clock, a process whose clock is a little behind, or a clock stepped back can only ever add to
the newest second, which every later check still counts; buckets of one key are therefore
written in non-decreasing order, no bucket is ever pruned and then looked at again, and every
61-second span of them was checked whole by its last admission. A clock stepped *forward* just
starts a fresh window, as real time would. (The price of a large backward step is liveness, not
safety: admissions keep landing in the newest second until the clock passes it again.)

**Ledgers** hold money per key as whole *units* (:data:`UNIT` = 1e-9 of a currency unit):
a committed total and leased reservations. ``ledger_reserve`` admits a reservation only if
committed + live reservations + amount stays within the limit; ``ledger_commit`` turns a live
reservation into committed spend; ``ledger_release`` drops it. Reservations whose lease has run
out (a crashed caller) no longer count and are purged. A settled or expired reservation leaves a
tombstone for :data:`TOMBSTONE_SECONDS`, so a second commit is recognised and never counts twice;
each result says what the store found (:attr:`LedgerResult.state`).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import Any, NamedTuple

from ...base.errors import InvalidTimeout, QwenMeterError

log = logging.getLogger("qwen_meter.store")

#: Buckets summed by a window check: the current second and the 60 before it.
WINDOW_BUCKETS = 61
#: Money is stored as whole multiples of this (exact for prices with up to 3 decimals per 1M).
UNIT = Decimal("1e-9")
#: How long a committed, released or expired reservation is remembered after its lease, to
#: name a second commit precisely. Safety does not depend on it: once forgotten, a strict
#: commit finds the reservation unknown and still counts nothing.
TOMBSTONE_SECONDS = 3_600

#: Ledger states: what a reserve/commit/release found.
OK, REFUSED, UNKNOWN, COMMITTED, RELEASED, EXPIRED = (
    "ok", "refused", "unknown", "committed", "released", "expired")


class StoreUnavailable(QwenMeterError):
    """The shared store (Redis, SQLite) could not be reached, answered in time, or write."""


def to_units(amount: Decimal, *, reserve: bool = False) -> int:
    """Money as whole units; reservations round up so they never under-cover."""
    rounding = ROUND_CEILING if reserve else ROUND_HALF_EVEN
    return int((amount / UNIT).to_integral_value(rounding=rounding))


def from_units(units: int) -> Decimal:
    return (Decimal(units) * UNIT).normalize()


def check_seconds(value: Any, what: str, *, allow_none: bool = False,
                  positive: bool = False) -> float | None:
    """``value`` as seconds: a finite real number >= 0 (> 0 with ``positive``), else
    :class:`~qwen_meter.errors.InvalidTimeout` naming ``what``. NaN, infinity, negative
    numbers, booleans and strings are refused; ``None`` only with ``allow_none``."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTimeout(f"{what} must be a number of seconds"
                             f"{' or None' if allow_none else ''}, got {value!r}")
    seconds = float(value)
    if not math.isfinite(seconds) or seconds < 0 or (positive and seconds == 0):
        bound = "> 0" if positive else ">= 0"
        extra = " (None waits without bound)" if allow_none else ""
        raise InvalidTimeout(f"{what} must be finite and {bound}, got {value!r}{extra}")
    return seconds


def hash_tag(key: str) -> str | None:
    """The Redis Cluster hash tag of ``key`` (the text of its first non-empty ``{...}``)."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    if end <= start + 1:
        return None
    return key[start + 1:end]


class WindowCheck(NamedTuple):
    """Add ``amount`` to ``key`` if the last 61 seconds stay within ``limit`` and, when
    ``per_second`` is set, the current second stays within it (a first arrival in an empty
    second is always let through, so one large request is never blocked for good)."""

    key: str
    limit: int
    amount: int
    per_second: int | None = None


#: A window acquire's "when": a second decided by the caller, or a clock the store reads
#: inside its atomic step (preferred: the second cannot go stale while the caller waits).
When = int | Callable[[], float]


def read_bucket(when: When) -> int:
    """The second a ``when`` stands for, read now."""
    if callable(when):
        now = when()
        if not math.isfinite(now):
            raise ValueError(f"the clock returned {now!r}")
        return math.floor(now)
    return when


@dataclass(frozen=True)
class AcquireResult:
    """``ok``, or the key that refused and in how many whole seconds it may pass.

    ``bucket`` is the second the store used (after clamping); reconcile and release adjust it.
    ``now`` is the clock reading behind it (None when the caller gave a second).
    """

    ok: bool
    retry_buckets: int = 0
    refused_key: str | None = None
    bucket: int | None = None
    now: float | None = None

    def __init__(self, ok: bool, retry_buckets: int = 0, refused_key: str | None = None,
                 bucket: int | None = None, now: float | None = None) -> None:
        # By hand: the generated __init__ of a frozen dataclass sets each field through
        # object.__setattr__, which cost as much as a tenth of a quiet SQLite acquire.
        fields = self.__dict__
        fields["ok"] = ok
        fields["retry_buckets"] = retry_buckets
        fields["refused_key"] = refused_key
        fields["bucket"] = bucket
        fields["now"] = now


@dataclass(frozen=True)
class LedgerResult:
    """Totals of a ledger after an operation (units) and what the store found (``state``)."""

    ok: bool
    committed: int
    reserved: int
    state: str = OK


def plan_acquire(checks: Sequence[WindowCheck], sums: Sequence[Sequence[int]],
                 bucket: int | None = None) -> AcquireResult:
    """Decide a window acquire from each key's last 61 bucket values (oldest first).

    Shared by the stores that compute in Python; the Redis script does the same in Lua.
    """
    for check, buckets in zip(checks, sums, strict=True):
        current = buckets[-1]
        if check.per_second is not None and current > 0 \
                and current + check.amount > check.per_second:
            return AcquireResult(False, 1, check.key, bucket)
        total = sum(buckets)
        if total + check.amount > check.limit:
            # Buckets fall out of the window oldest first; find the first second it fits.
            for k, value in enumerate(buckets[:-1], start=1):
                total -= value
                if total + check.amount <= check.limit:
                    return AcquireResult(False, k, check.key, bucket)
            return AcquireResult(False, WINDOW_BUCKETS, check.key, bucket)
    return AcquireResult(True, bucket=bucket)


class CircuitBreaker:
    """Stops calling a failing store for a while, so "open" callers do not wait on it each call.

    After ``failures`` consecutive failures the breaker *opens*: for ``cooldown`` seconds every
    call fails at once with :class:`StoreUnavailable` (no socket, no busy wait). Then one call
    is let through as a trial; success closes the breaker, failure opens it again. Opening and
    closing are logged on ``qwen_meter.store``.
    """

    def __init__(self, failures: int = 3, cooldown: float = 10.0, *, name: str = "store",
                 clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 1:
            raise ValueError(f"breaker failures must be a whole number >= 1, got {failures!r}")
        self.failures = failures
        self.cooldown = check_seconds(cooldown, "breaker cooldown") or 0.0
        self.name = name
        self.clock = clock
        self._lock = threading.Lock()
        self._count = 0
        self._open_until = 0.0
        self._trial = False

    @property
    def open(self) -> bool:
        """True while calls are being skipped."""
        return self._count >= self.failures and self.clock() < self._open_until

    @property
    def remaining(self) -> float:
        """Seconds until the next trial call is let through (0.0: closed, or trying now)."""
        if self._count < self.failures:
            return 0.0
        return max(0.0, self._open_until - self.clock())

    def before(self) -> None:
        """Raise :class:`StoreUnavailable` if the store must be skipped now."""
        if self._count < self.failures:
            return
        with self._lock:
            if self._count < self.failures:
                return
            if self.clock() < self._open_until or self._trial:
                raise StoreUnavailable(f"{self.name}: skipped after {self._count} failures "
                                       "(circuit open, cooling down)")
            self._trial = True  # half-open: this caller tries, the others keep skipping

    def success(self) -> None:
        if self._count:
            with self._lock:
                if self._count >= self.failures:
                    log.warning("%s answers again; circuit closed", self.name)
                self._count = 0
                self._trial = False

    def failure(self) -> None:
        with self._lock:
            self._count += 1
            self._trial = False
            if self._count >= self.failures:
                self._open_until = self.clock() + self.cooldown
                log.warning("%s failed %d times in a row; skipping it for %.1f s",
                            self.name, self._count, self.cooldown)


class Store(ABC):
    """Atomic operations on shared counters; every backend passes the same test suite.

    The ``a*`` methods are the asyncio twins. By default they run the blocking method in a
    worker thread (so the event loop never waits on a file lock or socket); stores with a
    native async client (Redis) or that never block (memory) override them.
    """

    @abstractmethod
    def window_acquire(self, checks: Sequence[WindowCheck], bucket: When) -> AcquireResult:
        """All-or-nothing: add every check's amount to the current second if every check
        passes. ``bucket``: a clock (read inside the atomic step) or a whole second."""

    @abstractmethod
    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        """Add ``delta`` (negative to refund) to an earlier bucket, if still in the window."""

    @abstractmethod
    def window_sum(self, key: str, bucket: int) -> int:
        """Sum of the 61 buckets ending at ``bucket``."""

    def window_settle(self, key: str, bucket: int, delta: int) -> None:
        """A limiter's reconcile or release: :meth:`window_adjust`, except that a store may
        apply a refund (``delta < 0``) a little after the call returns: no *other* process
        can be admitted more for it, since until it lands they count what the call reserved.
        By default it is ``window_adjust`` itself. The SQLite and Redis stores keep a refund
        for their next operation (folded into the next acquire's write, or sent with the next
        script), for at most their ``refund_delay`` (see :mod:`.refunds`). A charge
        (``delta > 0``) is never kept back, and this store's own later reads (acquire, sum)
        always see every refund it was given."""
        self.window_adjust(key, bucket, delta)

    @abstractmethod
    def ledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                       lease_until: float, now: float, expire_at: float | None) -> LedgerResult:
        """Reserve ``amount`` if committed + live reservations + amount <= ``limit``
        (``None``: no limit, always reserve). ``expire_at`` bounds the whole ledger's life.
        Reserving an id that is already live or settled changes nothing (state says which)."""

    @abstractmethod
    def ledger_commit(self, key: str, reservation: str, amount: int, now: float,
                      expire_at: float | None, *, strict: bool = False) -> LedgerResult:
        """Turn the reservation into ``amount`` of committed spend, once.

        A reservation already committed or released is never counted again (``state``
        ``committed`` / ``released``). One that is not live (``unknown``, ``expired``) is
        counted only when ``strict`` is false — spend recorded without a hold."""

    @abstractmethod
    def ledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        """Drop the reservation (a no-op for one not live; ``state`` says what was found)."""

    @abstractmethod
    def ledger_totals(self, key: str, now: float) -> LedgerResult:
        """Committed total and live reservations."""

    # --- asyncio twins ----------------------------------------------------------------------

    async def awindow_acquire(self, checks: Sequence[WindowCheck], bucket: When
                              ) -> AcquireResult:
        result: AcquireResult = await _offload(self.window_acquire, checks, bucket)
        return result

    async def awindow_adjust(self, key: str, bucket: int, delta: int) -> None:
        await _offload(self.window_adjust, key, bucket, delta)

    async def awindow_settle(self, key: str, bucket: int, delta: int) -> None:
        await self.awindow_adjust(key, bucket, delta)

    async def awindow_sum(self, key: str, bucket: int) -> int:
        result: int = await _offload(self.window_sum, key, bucket)
        return result

    async def aledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                              lease_until: float, now: float, expire_at: float | None
                              ) -> LedgerResult:
        result: LedgerResult = await _offload(self.ledger_reserve, key, reservation, amount,
                                              limit, lease_until, now, expire_at)
        return result

    async def aledger_commit(self, key: str, reservation: str, amount: int, now: float,
                             expire_at: float | None, *, strict: bool = False) -> LedgerResult:
        result: LedgerResult = await _offload(lambda: self.ledger_commit(
            key, reservation, amount, now, expire_at, strict=strict))
        return result

    async def aledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        result: LedgerResult = await _offload(self.ledger_release, key, reservation, now)
        return result

    async def aledger_totals(self, key: str, now: float) -> LedgerResult:
        result: LedgerResult = await _offload(self.ledger_totals, key, now)
        return result

    @property
    def degraded(self) -> bool:
        """True while the store's circuit breaker skips it."""
        breaker: CircuitBreaker | None = getattr(self, "breaker", None)
        return breaker is not None and breaker.open

    def close(self) -> None:  # noqa: B027 - most stores hold nothing to close
        """Release connections and files."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _offload(fn: Callable[..., Any], *args: Any) -> Any:
    import asyncio

    return await asyncio.to_thread(fn, *args)
