"""What a budget hands out: a :class:`Reservation` (money held for one call), a
:class:`BudgetStatus` (committed and reserved spend of a period), a :class:`ThresholdEvent`
(committed spend crossed a fraction of the limit), and the :class:`BudgetWarning` of soft
budgets."""

from __future__ import annotations

import itertools
import os
import secrets
from dataclasses import dataclass
from decimal import Decimal

from ...base.errors import QwenMeterWarning

# Reservation ids: a random 64-bit prefix for this process and a counter, unique across the
# processes sharing a store without a uuid4 (an os.urandom call) per reservation. A forked
# child draws its own prefix, or it would repeat its parent's ids.
_id_prefix = ""
_id_counter: itertools.count[int] = itertools.count()


def _new_id_prefix() -> None:
    global _id_prefix, _id_counter
    _id_prefix = secrets.token_hex(8)
    _id_counter = itertools.count()


_new_id_prefix()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_id_prefix)


def new_reservation_id() -> str:
    """A reservation id no other reservation of any process has (32 hex digits at most)."""
    return f"{_id_prefix}{next(_id_counter):016x}"



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

    @property
    def overspent(self) -> Decimal:
        """How far committed spend is past the limit (0 if it is not): calls that cost more
        than they held can take it there; no reservation fits until the period resets."""
        return max(Decimal(0), self.committed - self.limit)


@dataclass(frozen=True)
class ThresholdEvent:
    """A budget's committed spend crossed ``threshold`` (a fraction of the limit)."""

    budget: str
    scope_value: str
    threshold: float
    committed: Decimal
    limit: Decimal
    currency: str
    #: for ``on_overspent``: how far committed spend went past the limit (else 0)
    overspent: Decimal = Decimal(0)


def subject_text(scope: str, scope_value: str) -> str:
    """A budget's subject as its messages name it: ``team=search``, once. The meter keys a
    tag-scoped budget by the call's whole tag (``team=search``; the gateway's key budgets by
    ``key=<name>``) and a user budget by the bare user, so the scope's name is added only where
    the value does not start with it (the store's keys stay as they are)."""
    if scope == "global":
        return "global"
    prefix = f"{scope}="
    tagged = scope != "user" and scope_value.startswith(prefix)
    return scope_value if tagged else prefix + scope_value
