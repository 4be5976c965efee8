"""Spend budgets that concurrent calls cannot overshoot.

A :class:`Budget` has a limit in one currency, a period (none, hour, day, week or month; calendar
periods in a time zone) and a scope (``global``, or keyed by user, tag, API key ...). Before a
call, :meth:`Budget.reserve` holds its worst-case cost; after it, :meth:`Budget.commit` records
the real cost and frees the rest; :meth:`Budget.release` frees a call that failed. The store
admits a reservation only while committed + reserved + amount <= limit, atomically, so the
invariant committed + reserved <= limit holds at every moment, across threads, processes and
hosts. Reservations are leased: a crashed caller's hold expires. Commits are exactly once and
checked by the store (a second commit, a commit after release or after the lease ran out is a
typed :class:`~qwen_meter.errors.ReservationError` and counts nothing); releases are
idempotent. Every operation has an asyncio twin (``reserve_async`` ...) sharing the same plan
and decision code.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from ...base import checks as check
from ...base.errors import (
    BudgetExceeded,
    ConfigurationError,
    ReservationError,
    ReservationExpired,
    ReservationSettled,
    ReservationUnknown,
    StoreUnavailableWarning,
)
from ...billing.pricing import Cost, CostEstimate
from ...catalogue.records import CURRENCIES
from ..store import Store, StoreUnavailable, open_store
from ..store.base import (
    COMMITTED,
    EXPIRED,
    RELEASED,
    LedgerResult,
    check_seconds,
    from_units,
    to_units,
)
from .checks import MODES, check_budget_args
from .money import parse_money
from .periods import PERIODS, period_bounds
from .values import (
    BudgetStatus,
    BudgetWarning,
    Reservation,
    ThresholdEvent,
    new_reservation_id,
    subject_text,
)

log = logging.getLogger("qwen_meter.budget")


class Budget:
    """A spending limit; see the module docs.

    ``on_threshold`` is called with a :class:`ThresholdEvent` each time a commit takes the
    committed spend across one of ``thresholds`` (fractions of the limit) — once per crossing,
    even with many processes, because each commit's before/after comes from the store.

    A call can cost more than it held (its usage went past the estimate, or it was committed
    at a cost that was not reserved). Its commit still records the real cost — the money was
    spent — so committed spend can pass the limit. When a commit takes it past, the budget
    says so: a warning is logged, ``on_overspent`` is called with a :class:`ThresholdEvent`
    whose ``overspent`` is the amount over the limit, and :attr:`BudgetStatus.overspent`
    shows it. Until the period resets no reservation fits (the store admits one only while
    committed + reserved + amount <= limit), so a hard budget refuses every call.
    """

    def __init__(self, limit: Any, currency: str | None = None, *, per: str | None = None,
                 scope: str = "global", name: str = "budget", tz: str | dt.tzinfo = "UTC",
                 mode: str = "hard", thresholds: Sequence[float] = (0.5, 0.8, 1.0),
                 on_threshold: Callable[[ThresholdEvent], None] | None = None,
                 on_overspent: Callable[[ThresholdEvent], None] | None = None,
                 store: Store | str | Any = None, lease: float = 600.0,
                 on_store_error: str = "closed", clock: Callable[[], float] = time.time) -> None:
        check_budget_args(currency=currency, scope=scope, name=name, tz=tz,
                          thresholds=thresholds, on_threshold=on_threshold, store=store,
                          clock=clock)
        check.callable_(on_overspent, "Budget(on_overspent=)", optional=True)
        amount, currency = parse_money(limit, currency)
        if amount < 0:
            raise ConfigurationError(f"a budget limit cannot be negative: {amount}")
        if currency not in CURRENCIES:
            raise ConfigurationError(f"a budget needs a currency ({', '.join(CURRENCIES)}), "
                                     f"got {currency!r}")
        if per not in PERIODS:
            raise ConfigurationError(f"per must be one of hour, day, week, month or None, "
                                     f"not {per!r}")
        if mode not in MODES:
            raise ConfigurationError(f"mode must be 'hard' or 'soft', not {mode!r}")
        if on_store_error not in ("closed", "open"):
            raise ConfigurationError("on_store_error must be 'closed' or 'open'")
        lease = check_seconds(lease, "lease", positive=True) or 0.0
        if any(not 0 < t <= 10 for t in thresholds):
            raise ConfigurationError("thresholds are fractions of the limit, e.g. 0.8")
        if isinstance(tz, str):
            from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

            try:
                tz = ZoneInfo(tz)
            except (ZoneInfoNotFoundError, ValueError):
                raise ConfigurationError(f"unknown time zone {tz!r}") from None
        self.limit = amount
        self.currency = currency
        self.per = per
        self.scope = scope
        self.name = name
        self.tz = tz
        self.mode = mode
        self.thresholds = tuple(sorted(thresholds))
        self.on_threshold = on_threshold
        self.on_overspent = on_overspent
        self.store = open_store(store)
        self.lease = lease
        self.on_store_error = on_store_error
        self.clock = clock
        self._limit_units = to_units(amount)

    def __repr__(self) -> str:
        return (f"Budget({self.limit} {self.currency}, per={self.per!r}, scope={self.scope!r}, "
                f"name={self.name!r}, mode={self.mode!r})")

    # --- helpers --------------------------------------------------------------------------

    def _scope_value(self, key: str | None) -> str:
        if self.scope == "global":
            return "global"
        if not key:
            raise ConfigurationError(f"budget {self.name!r} is per {self.scope}: pass key=")
        return str(key)

    def _ledger(self, scope_value: str, now: float) -> tuple[str, str, float | None]:
        period, end = period_bounds(self.per, now, self.tz)
        key = f"budget:{self.name}:{self.scope}={scope_value}:{period}"
        # Keep a finished period a day longer, for late commits of calls that straddle it.
        return key, period, None if end is None else end + 86_400

    def _money(self, amount: Any, what: str) -> Decimal:
        if isinstance(amount, CostEstimate):
            amount = amount.high
        if isinstance(amount, Cost):
            if amount.currency != self.currency:
                raise ConfigurationError(f"{what} is in {amount.currency}; budget "
                                         f"{self.name!r} is in {self.currency}")
            if amount.amount is None:
                raise BudgetExceeded(f"budget {self.name!r}: {what} is unpriced "
                                     f"({amount.unpriced}), so it cannot be checked")
            return amount.amount
        value, currency = parse_money(amount)
        if currency is not None and currency != self.currency:
            raise ConfigurationError(f"{what} is in {currency}; budget is in {self.currency}")
        if value < 0:
            raise ConfigurationError(f"{what} cannot be negative: {value}")
        return value

    def _store_failed(self, exc: StoreUnavailable, action: str) -> None:
        if self.on_store_error == "closed":
            raise exc
        warnings.warn(f"budget {self.name!r}: store unavailable, {action} anyway: {exc}",
                      StoreUnavailableWarning, stacklevel=3)
        log.warning("budget %s: %s without the store: %s", self.name, action, exc)

    # --- the cycle: each operation is a plan, one store call (sync or async), a decision --

    def _reserve_plan(self, amount: Any, key: str | None) -> tuple[Reservation, str, int | None,
                                                                   float]:
        check.optional_text(key, "Budget.reserve(key=)")
        scope_value = self._scope_value(key)
        try:
            value = self._money(amount, "the reservation")
        except BudgetExceeded:
            if self.mode == "hard":
                raise
            warnings.warn(f"budget {self.name!r}: unpriced call not counted", BudgetWarning,
                          stacklevel=3)
            value = Decimal(0)
        units = to_units(value, reserve=True)
        now = self.clock()
        ledger, _, expire_at = self._ledger(scope_value, now)
        limit = self._limit_units if self.mode == "hard" else None
        held = Reservation(new_reservation_id(), self.name, ledger, scope_value, value, units,
                           expire_at)
        return held, ledger, limit, now

    def _reserve_done(self, held: Reservation, result: LedgerResult | StoreUnavailable
                      ) -> Reservation:
        period = held.key.rsplit(":", 1)[1]
        if isinstance(result, StoreUnavailable):
            self._store_failed(result, "reserving")
            return replace(held, degraded=True)
        if not result.ok:
            subject = subject_text(self.scope, held.scope_value)
            raise BudgetExceeded(
                f"budget {self.name!r} ({subject}, {period}): {held.amount} {self.currency} "
                f"does not fit; committed {from_units(result.committed)}, reserved "
                f"{from_units(result.reserved)}, limit {self.limit} {self.currency}")
        if self.mode == "soft" and result.committed + result.reserved > self._limit_units:
            subject = subject_text(self.scope, held.scope_value)
            warnings.warn(f"budget {self.name!r} ({subject}, {period}) is over its limit of "
                          f"{self.limit} {self.currency}", BudgetWarning, stacklevel=3)
        return held

    def reserve(self, amount: Any, *, key: str | None = None) -> Reservation:
        """Hold ``amount`` (money, a :class:`Cost`, or a :class:`CostEstimate`'s high end).

        Hard mode raises :class:`~qwen_meter.errors.BudgetExceeded` if it does not fit; soft
        mode warns (:class:`BudgetWarning`) and holds it anyway.
        """
        held, ledger, limit, now = self._reserve_plan(amount, key)
        try:
            result: LedgerResult | StoreUnavailable = self.store.ledger_reserve(
                ledger, held.id, held.units, limit, now + self.lease, now, held.expire_at)
        except StoreUnavailable as exc:
            result = exc
        return self._reserve_done(held, result)

    async def reserve_async(self, amount: Any, *, key: str | None = None) -> Reservation:
        """:meth:`reserve` for asyncio (the store call never blocks the event loop)."""
        held, ledger, limit, now = self._reserve_plan(amount, key)
        try:
            result: LedgerResult | StoreUnavailable = await self.store.aledger_reserve(
                ledger, held.id, held.units, limit, now + self.lease, now, held.expire_at)
        except StoreUnavailable as exc:
            result = exc
        return self._reserve_done(held, result)

    def _commit_units(self, reservation: Reservation, cost: Any) -> int:
        check.instance(reservation, Reservation, "Budget.commit(reservation=)",
                       "a Reservation from reserve()")
        if cost is None:
            value = reservation.amount
        else:
            try:
                value = self._money(cost, "the cost")
            except BudgetExceeded:
                log.warning("budget %s: unpriced cost, committing the reservation", self.name)
                value = reservation.amount
        return to_units(value)

    def _commit_done(self, reservation: Reservation, units: int,
                     result: LedgerResult | StoreUnavailable) -> BudgetStatus:
        if isinstance(result, StoreUnavailable):
            self._store_failed(result, "committing")
            return self._status(reservation.key, 0, 0, degraded=True)
        if not result.ok:
            raise self._misuse(reservation, result.state, "commit")
        self._fire_thresholds(reservation, result.committed - units, result.committed)
        if result.committed - units <= self._limit_units < result.committed:
            self._overspent(reservation, result.committed)
        return self._status(reservation.key, result.committed, result.reserved)

    def _misuse(self, reservation: Reservation, state: str, action: str) -> ReservationError:
        where = f"budget {self.name!r}: cannot {action} reservation {reservation.id}"
        if state in (COMMITTED, RELEASED):
            return ReservationSettled(f"{where}: it was already {state}; nothing was counted",
                                      reservation=reservation.id, budget=self.name, state=state)
        if state == EXPIRED:
            return ReservationExpired(
                f"{where}: its lease of {self.lease:g} s ran out, so its hold was already freed "
                "for other calls; nothing was counted (give calls this long a longer lease=)",
                reservation=reservation.id, budget=self.name)
        return ReservationUnknown(f"{where}: the store has no such reservation (another "
                                  "store or budget, or settled long ago); nothing was counted",
                                  reservation=reservation.id, budget=self.name)

    def commit(self, reservation: Reservation, cost: Any = None) -> BudgetStatus:
        """Record the call's real cost (default: the reserved amount) and free the rest.

        Exactly once per reservation: committing one that was already committed or released
        raises :class:`~qwen_meter.errors.ReservationSettled`, one whose lease ran out
        :class:`~qwen_meter.errors.ReservationExpired`, one the store never saw
        :class:`~qwen_meter.errors.ReservationUnknown` — and none of them counts anything.
        A ``degraded`` reservation (made while the store was down under ``"open"``) is
        recorded as spend without a hold, still only once.
        """
        units = self._commit_units(reservation, cost)
        now = self.clock()
        try:
            result: LedgerResult | StoreUnavailable = self.store.ledger_commit(
                reservation.key, reservation.id, units, now, reservation.expire_at,
                strict=not reservation.degraded)
        except StoreUnavailable as exc:
            result = exc
        return self._commit_done(reservation, units, result)

    async def commit_async(self, reservation: Reservation, cost: Any = None) -> BudgetStatus:
        """:meth:`commit` for asyncio."""
        units = self._commit_units(reservation, cost)
        now = self.clock()
        try:
            result: LedgerResult | StoreUnavailable = await self.store.aledger_commit(
                reservation.key, reservation.id, units, now, reservation.expire_at,
                strict=not reservation.degraded)
        except StoreUnavailable as exc:
            result = exc
        return self._commit_done(reservation, units, result)

    def commit_journaled(self, hold: Mapping[str, Any]) -> LedgerResult:
        """Commit, at its reserved amount, a hold named by a usage log's journal (the
        ``holds`` of an intent, :mod:`qwen_meter.meter.journal`): the call of a process that
        died after sending it. The store settles a reservation once, so a second commit (two
        processes recovering the same intent, or the caller's own commit before it died) is
        refused and counts nothing (``state`` ``committed`` / ``released``). A hold whose
        lease already ran out is counted as spend without a hold: the call was sent.
        Raises :class:`~qwen_meter.store.StoreUnavailable` if the store cannot be reached
        (recovery then tries again at the next start)."""
        amount = self._money(str(hold["amount"]), "the journaled hold")
        expire_at = hold.get("expire_at")
        units = to_units(amount)
        result = self.store.ledger_commit(str(hold["key"]), str(hold["id"]), units, self.clock(),
                                          None if expire_at is None else float(expire_at),
                                          strict=False)
        if result.ok and self.on_threshold is not None:
            self._fire_thresholds(Reservation(str(hold["id"]), self.name, str(hold["key"]),
                                              str(hold.get("scope", "")), amount, units, None),
                                  result.committed - units, result.committed)
        return result

    def _release_done(self, reservation: Reservation, result: LedgerResult | StoreUnavailable
                      ) -> BudgetStatus:
        if isinstance(result, StoreUnavailable):
            self._store_failed(result, "releasing")
            return self._status(reservation.key, 0, 0, degraded=True)
        return self._status(reservation.key, result.committed, result.reserved)

    def release(self, reservation: Reservation) -> BudgetStatus:
        """Free a reservation whose call did not happen (or did not cost anything).

        Idempotent: releasing one that is no longer held (released, committed, expired) is a
        no-op — a commit that happened stands, and nothing is freed twice.
        """
        check.instance(reservation, Reservation, "Budget.release(reservation=)",
                       "a Reservation from reserve()")
        try:
            result: LedgerResult | StoreUnavailable = self.store.ledger_release(
                reservation.key, reservation.id, self.clock())
        except StoreUnavailable as exc:
            result = exc
        return self._release_done(reservation, result)

    async def release_async(self, reservation: Reservation) -> BudgetStatus:
        """:meth:`release` for asyncio."""
        check.instance(reservation, Reservation, "Budget.release(reservation=)",
                       "a Reservation from reserve()")
        try:
            result: LedgerResult | StoreUnavailable = await self.store.aledger_release(
                reservation.key, reservation.id, self.clock())
        except StoreUnavailable as exc:
            result = exc
        return self._release_done(reservation, result)

    def status(self, key: str | None = None) -> BudgetStatus:
        """Committed and reserved spend of the current period."""
        check.optional_text(key, "Budget.status(key=)")
        now = self.clock()
        ledger, _, _ = self._ledger(self._scope_value(key), now)
        try:
            result = self.store.ledger_totals(ledger, now)
        except StoreUnavailable as exc:
            self._store_failed(exc, "reporting")
            return self._status(ledger, 0, 0, degraded=True)
        return self._status(ledger, result.committed, result.reserved)

    def _status(self, ledger: str, committed: int, reserved: int, *,
                degraded: bool = False) -> BudgetStatus:
        return BudgetStatus(self.limit, self.currency, from_units(committed),
                            from_units(reserved), ledger.rsplit(":", 1)[1], degraded)

    def _overspent(self, reservation: Reservation, committed: int) -> None:
        over = from_units(committed - self._limit_units)
        log.warning("budget %s (%s) overspent: %s %s committed of a %s limit (%s over); "
                    "no call fits until the period resets", self.name,
                    subject_text(self.scope, reservation.scope_value), from_units(committed),
                    self.currency, self.limit, over)
        if self.on_overspent is not None:
            self.on_overspent(ThresholdEvent(self.name, reservation.scope_value,
                                             float(from_units(committed) / self.limit)
                                             if self.limit else 0.0, from_units(committed),
                                             self.limit, self.currency, over))

    def _fire_thresholds(self, reservation: Reservation, before: int, after: int) -> None:
        if self.on_threshold is None or self._limit_units == 0:
            return
        for threshold in self.thresholds:
            mark = self._limit_units * Decimal(str(threshold))
            if before < mark <= after:
                self.on_threshold(ThresholdEvent(self.name, reservation.scope_value, threshold,
                                                 from_units(after), self.limit, self.currency))
