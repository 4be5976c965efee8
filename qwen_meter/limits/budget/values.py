"""What a budget hands out: a :class:`Reservation` (money held for one call), a
:class:`BudgetStatus` (committed and reserved spend of a period), a :class:`ThresholdEvent`
(committed spend crossed a fraction of the limit), and the :class:`BudgetWarning` of soft
budgets."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ...base.errors import QwenMeterWarning


class BudgetWarning(QwenMeterWarning, UserWarning):
    """A soft budget was exceeded (the call went ahead)."""


@dataclass(frozen=True)
class Reservation:
    """Money held for one call until it is committed or released."""

    id: str
    budget: str
    key: str
    scope_value: str
    amount: Decimal
    units: int
    expire_at: float | None
    degraded: bool = False


@dataclass(frozen=True)
class BudgetStatus:
    """Committed and reserved spend of one budget scope in its current period."""

    limit: Decimal
    currency: str
    committed: Decimal
    reserved: Decimal
    period: str
    degraded: bool = False  # True: the store could not be asked (``on_store_error="open"``)

    @property
    def remaining(self) -> Decimal:
        return self.limit - self.committed - self.reserved


@dataclass(frozen=True)
class ThresholdEvent:
    """A budget's committed spend crossed ``threshold`` (a fraction of the limit)."""

    budget: str
    scope_value: str
    threshold: float
    committed: Decimal
    limit: Decimal
    currency: str
