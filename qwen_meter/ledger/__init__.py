"""The ledger: usage records, virtual keys, user and team budgets, alert marks — shared by every
gateway replica of a fleet (PostgreSQL) or kept in one embedded file (SQLite, the default).

    ledger = open_ledger("sqlite:///ledger.db")            # relative to the working folder
    ledger = open_ledger("sqlite:////var/lib/qwen-meter/ledger.db")   # an absolute path
    ledger = open_ledger("postgresql://meter@db/meter")

The parts: :mod:`.base` (the interface), :mod:`.common` (hashing, URLs, checks),
:mod:`.migrations` (versioned SQL files), :mod:`.core` (the SQL both backends share),
:mod:`.spend`, :mod:`.watch` / :mod:`.pg_watch`, and the backends :mod:`.sqlite` and
:mod:`.postgres`.
"""

from __future__ import annotations

from typing import Any

from .base import (
    BUDGET_SCOPES,
    SPEND_GROUPS,
    BudgetSpec,
    KeyEntry,
    Ledger,
    LedgerConflict,
    LedgerError,
    LedgerLogError,
    LedgerNotFound,
    ScopeBudget,
    SpendRow,
)
from .common import hash_key, mask_url


def open_ledger(url: Any, *, durability: str = "flush", **options: Any) -> Ledger:
    """A ledger from its URL (a :class:`Ledger` is returned as it is).

    ``sqlite:///relative.db`` / ``sqlite:////absolute/path.db`` (as SQLAlchemy writes them),
    ``postgresql://user:password@host:5432/db`` (or ``postgres://``; any libpq URL).
    ``options`` go to the backend (PostgreSQL: ``min_size``, ``max_size``, ``timeout``)."""
    if isinstance(url, Ledger):
        return url
    if not isinstance(url, str):
        raise LedgerError(f"a ledger URL must be a string, not {type(url).__name__}")
    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        from .sqlite import SQLiteLedger

        return SQLiteLedger(url[len("sqlite:///"):], durability=durability, url=url, **options)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresLedger

        return PostgresLedger(url, durability=durability, **options)
    raise LedgerError(f"unknown ledger URL {mask_url(url)!r}: use sqlite:///file.db or "
                      "postgresql://user@host/db")


__all__ = ["BUDGET_SCOPES", "SPEND_GROUPS", "BudgetSpec", "KeyEntry", "Ledger",
           "LedgerConflict", "LedgerError", "LedgerLogError", "LedgerNotFound", "ScopeBudget",
           "SpendRow", "hash_key", "mask_url", "open_ledger"]
