"""The ledger's interface: one :class:`Ledger` for usage records, virtual keys, budgets of
users and teams, and the marks that make an alert go out once — whatever database holds them.

A ledger is a :class:`~qwen_meter.meter.log.UsageLog` too (records idempotent by id, the
journal's intents, recovery under a lock), so ``Meter(log=ledger)`` writes into it directly
and every gateway replica of a fleet shares one.

Backends: :mod:`.sqlite` (the embedded default, one file) and :mod:`.postgres` (a fleet);
:func:`~qwen_meter.ledger.open_ledger` picks one from a URL.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from ..base.errors import QwenMeterError
from ..meter.logbase import UsageLog
from ..meter.records import UsageLogError, UsageRecord

#: how spend can be grouped (``GET /admin/spend?by=``)
SPEND_GROUPS = ("key", "user", "team", "model", "tag", "day")
#: who a budget of the ledger belongs to (key budgets live on the key itself)
BUDGET_SCOPES = ("user", "team", "global")


class LedgerError(QwenMeterError):
    """The ledger cannot be opened, migrated, read or written (names the URL, never a password)."""


class LedgerLogError(LedgerError, UsageLogError):
    """The ledger cannot write or read usage records (also a
    :class:`~qwen_meter.meter.records.UsageLogError`, as any usage log raises)."""


class LedgerConflict(LedgerError):
    """A key or budget with that name already exists."""


class LedgerNotFound(LedgerError):
    """No key or budget with that name."""


@dataclass(frozen=True)
class BudgetSpec:
    """A spending limit as the gateway config writes it: ``{name, limit: "5 CNY", per: day}``."""

    name: str
    limit: str
    per: str | None = None
    mode: str = "hard"


@dataclass(frozen=True)
class KeyEntry:
    """A virtual key as the ledger stores it: its SHA-256 (``sha256:…``), never the key."""

    name: str
    hash: str
    prefix: str = ""
    user: str | None = None
    team: str | None = None
    tags: tuple[str, ...] = ()
    upstream: str = "default"
    rpm: int | None = None
    tpm: int | None = None
    models: tuple[str, ...] | None = None
    budgets: tuple[BudgetSpec, ...] = ()
    #: account-level client headers this key may send upstream (``X-DashScope-WorkSpace`` …)
    headers: tuple[str, ...] = ()
    revoked: bool = False
    created: str | None = None
    updated: str | None = None


@dataclass(frozen=True)
class ScopeBudget:
    """A budget of a user, a team (``scope``, ``subject``) or of everything (``global``, ``*``)."""

    scope: str
    subject: str
    budget: BudgetSpec


@dataclass(frozen=True)
class SpendRow:
    """One group of :meth:`Ledger.spend`: cost per currency, never summed across currencies
    (``currency`` None: calls with no price)."""

    group: str | None
    currency: str | None
    cost: Decimal
    calls: int
    prompt_tokens: int
    completion_tokens: int
    extra: dict[str, object] = field(default_factory=dict)


class Ledger(UsageLog):
    """Records, keys, budgets and alert marks in one database. Thread-safe; every method is
    one short transaction."""

    url: str = ""

    # --- records (UsageLog: append, append_intent, pending_intents, recovery_lock, __iter__) --
    def append_many(self, records: Iterable[UsageRecord]) -> int:
        """Write records, skipping ids already there; returns how many were new."""
        raise NotImplementedError

    def count(self) -> int:
        """How many records the ledger holds."""
        raise NotImplementedError

    # --- virtual keys ---------------------------------------------------------------------
    def create_key(self, entry: KeyEntry) -> KeyEntry:
        """Store a new key (:class:`LedgerConflict` if the name is taken, revoked or not)."""
        raise NotImplementedError

    def get_key(self, name: str) -> KeyEntry | None:
        raise NotImplementedError

    def key_by_hash(self, key_hash: str) -> KeyEntry | None:
        raise NotImplementedError

    def list_keys(self, *, revoked: bool = True) -> list[KeyEntry]:
        raise NotImplementedError

    def update_key(self, name: str, **changes: object) -> KeyEntry:
        """Change a key's fields (not ``name`` or ``hash``); :class:`LedgerNotFound` if none."""
        raise NotImplementedError

    def revoke_key(self, name: str) -> KeyEntry:
        """Mark a key revoked; it stays, so its records stay attributable."""
        raise NotImplementedError

    # --- budgets of users, teams and everything -------------------------------------------
    def set_budget(self, budget: ScopeBudget) -> ScopeBudget:
        """Create or replace the budget (scope, subject, budget.name)."""
        raise NotImplementedError

    def list_budgets(self) -> list[ScopeBudget]:
        raise NotImplementedError

    def delete_budget(self, scope: str, subject: str, name: str) -> None:
        raise NotImplementedError

    # --- changes, seen by every replica ---------------------------------------------------
    def version(self) -> int:
        """A number that grows with every change of a key or a budget."""
        raise NotImplementedError

    def watch(self, callback: Callable[[int], None]) -> Callable[[], None]:
        """Call ``callback(version)`` (from a background thread) after each change made by any
        process; returns a function that stops watching."""
        raise NotImplementedError

    # --- spend ------------------------------------------------------------------------------
    def spend(self, by: str, *, since: dt.datetime | None = None,
              until: dt.datetime | None = None, tz: str = "UTC") -> list[SpendRow]:
        """Cost, calls and tokens grouped by one of :data:`SPEND_GROUPS` (``since`` inclusive,
        ``until`` exclusive), per currency; ``day`` is the calendar date in ``tz``."""
        raise NotImplementedError

    # --- alerts -----------------------------------------------------------------------------
    def claim_alert(self, mark: str) -> bool:
        """True for the first caller of any process to claim ``mark`` (an alert and its
        threshold and period), False ever after: each alert is sent once."""
        raise NotImplementedError


def key_entries(entries: Sequence[KeyEntry]) -> dict[str, KeyEntry]:
    """Keys by hash, revoked ones left out (what a gateway looks a request's key up in)."""
    return {e.hash: e for e in entries if not e.revoked}
