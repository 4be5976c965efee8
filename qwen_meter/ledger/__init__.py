"""The ledger: usage records, virtual keys, user and team budgets, alert marks — shared by every
gateway replica of a fleet (PostgreSQL) or kept in one embedded file (SQLite, the default).

    ledger = open_ledger("sqlite:///var/lib/qwen-meter/ledger.db")
    ledger = open_ledger("postgresql://meter@db/meter")
"""

from __future__ import annotations

from .base import (
    BUDGET_SCOPES,
    SPEND_GROUPS,
    BudgetSpec,
    KeyEntry,
    Ledger,
    LedgerConflict,
    LedgerError,
    LedgerNotFound,
    ScopeBudget,
    SpendRow,
)

__all__ = ["BUDGET_SCOPES", "SPEND_GROUPS", "BudgetSpec", "KeyEntry", "Ledger",
           "LedgerConflict", "LedgerError", "LedgerNotFound", "ScopeBudget", "SpendRow"]
