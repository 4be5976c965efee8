"""Spend budgets that concurrent calls cannot overshoot.

:class:`Budget` (in :mod:`.core`) is the budget itself; :mod:`.values` holds what it hands out
(:class:`Reservation`, :class:`BudgetStatus`, :class:`ThresholdEvent`, :class:`BudgetWarning`);
:mod:`.money` parses amounts of money, :mod:`.periods` computes calendar periods, and
:mod:`.checks` checks the constructor's arguments.
"""

from __future__ import annotations

from .checks import MODES
from .core import Budget
from .money import MAX_AMOUNT, parse_money
from .periods import PERIODS, period_bounds
from .values import BudgetStatus, BudgetWarning, Reservation, ThresholdEvent

__all__ = ["MAX_AMOUNT", "MODES", "PERIODS", "Budget", "BudgetStatus", "BudgetWarning",
           "Reservation", "ThresholdEvent", "parse_money", "period_bounds"]
