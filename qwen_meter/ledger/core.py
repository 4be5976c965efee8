"""The SQL both backends run, written once: records and intents (the usage log), keys, budgets,
the change version and alert marks. A backend supplies a transaction (:meth:`SQLLedger._tx`),
how its column types are encoded, and what only it can do (spend, watch, recovery lock).

SQL here uses ``?`` placeholders; the PostgreSQL backend turns them into ``%s``.

Records are written as SQLiteLog writes them: the outcome inserted and its intent deleted in
one transaction, so ``intents`` holds exactly the calls not settled. An insert whose id is
already there does nothing (``ON CONFLICT (id) DO NOTHING``): a retried write, or the same
record from two replicas, is one row. Under asyncio (and with ``durability="buffered"``) writes
go through one background thread that commits what is queued in one transaction, so the event
loop never waits on the database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from typing import Any

from ..meter.journal import intent_json, pending_record
from ..meter.logbase import check_durability
from ..meter.queued import Item as _Item
from ..meter.queued import QueuedWrites
from ..meter.record_checks import json_or_unreadable, record_or_warn
from ..meter.records import UsageRecord
from .base import (
    KeyEntry,
    Ledger,
    LedgerConflict,
    LedgerError,
    LedgerLogError,
    LedgerNotFound,
    ScopeBudget,
)
from .common import (
    KEY_COLUMNS,
    RECORD_COLUMNS,
    budgets_from,
    budgets_json,
    changed_key,
    check_key,
    check_name,
    check_scope_budget,
    fail,
    intent_time,
    mask_url,
    now,
    record_row,
    scope_of,
)

INSERT_RECORD = (f"INSERT INTO records ({', '.join(RECORD_COLUMNS)}) VALUES "
                  f"({', '.join('?' * len(RECORD_COLUMNS))}) ON CONFLICT (id) DO NOTHING")
# An intent retried after its outcome was written must not come back as pending.
INSERT_INTENT = ("INSERT INTO intents (id, time, record) SELECT ?, ?, ? WHERE NOT EXISTS "
                  "(SELECT 1 FROM records WHERE id = ?) ON CONFLICT (id) DO UPDATE SET "
                  "time = excluded.time, record = excluded.record")
_KEY_SELECT = f"SELECT {', '.join(KEY_COLUMNS)} FROM keys"


class Executor:
    """What a transaction offers: ``execute(sql, params)`` → a DB-API cursor."""

    def execute(self, sql: str, params: Iterable[Any] = ()) -> Any:
        raise NotImplementedError


class SQLLedger(QueuedWrites, Ledger):
    """The shared body of :class:`~.sqlite.SQLiteLedger` and
    :class:`~.postgres.PostgresLedger`."""

    _errors: tuple[type[BaseException], ...] = ()
    _closed = False

    def _init_common(self, url: str, durability: str) -> None:
        self.url = url
        self.durability = check_durability(durability, False, "open_ledger")
        self._pid = os.getpid()
        self._watchers: list[Callable[[], None]] = []

    # --- what a backend supplies ---------------------------------------------------------
    def _tx(self, *, write: bool = True) -> contextlib.AbstractContextManager[Executor]:
        """One transaction (``write=False``: it only reads, and SQLite need not queue it
        behind the writers of other processes)."""
        raise NotImplementedError

    def _time(self, value: dt.datetime) -> Any:
        return value

    def _money(self, value: Decimal | None) -> Any:
        return value

    def _list(self, value: tuple[str, ...] | list[str] | None) -> Any:
        return None if value is None else list(value)

    def _unlist(self, value: Any) -> tuple[str, ...] | None:
        return None if value is None else tuple(value)

    def _json(self, text: str) -> Any:
        return text

    def _changed(self, ex: Executor, version: int) -> None:
        """After the version grew in transaction ``ex`` (PostgreSQL: NOTIFY)."""

    def _for_update(self) -> str:
        return ""

    @contextlib.contextmanager
    def _guard(self, what: str, cls: type[LedgerError] = LedgerError) -> Iterator[None]:
        """Driver errors → ``cls`` (a :class:`LedgerError`) naming the ledger, its password
        masked."""
        if self._closed:
            raise fail(self.url, what, "the ledger is closed", cls)
        if os.getpid() != self._pid:
            # A forked child shares the parent's sockets and file handles: using (or even
            # closing) them would corrupt the parent's connections.
            raise fail(self.url, what, "the ledger was opened in the parent process; open it "
                       "again in this one (after forking)", cls)
        try:
            yield
        except LedgerError:
            raise
        except self._errors as exc:
            raise fail(self.url, what, exc, cls) from None

    # --- records --------------------------------------------------------------------------
    def _write(self, items: list[_Item]) -> int:
        """One transaction for ``items``; how many records were new."""
        rows: list[tuple[bool, tuple[Any, ...], str | None]] = []
        for item in items:  # checked before the transaction: a bad record fails alone
            if isinstance(item, UsageRecord):
                rows.append((True, self._record_params(item), item.id))
            else:
                when = intent_time(item)
                rows.append((False, (item.get("id"), None if when is None else self._time(when),
                                     intent_json(item), item.get("id")), None))
        with self._guard("cannot write records", LedgerLogError):
            return self._store(rows)

    def _store(self, rows: list[tuple[bool, tuple[Any, ...], str | None]]) -> int:
        """Write checked rows ``(is_record, params, record id)`` in one transaction."""
        new = 0
        with self._tx() as ex:
            for is_record, params, record_id in rows:
                if is_record:
                    new += max(0, ex.execute(INSERT_RECORD, params).rowcount)
                    ex.execute("DELETE FROM intents WHERE id = ?", (record_id,))
                else:
                    ex.execute(INSERT_INTENT, params)
        return new

    def _record_params(self, record: UsageRecord) -> tuple[Any, ...]:
        row = list(record_row(record))
        row[1] = self._time(row[1])
        row[9] = self._money(row[9])
        row[12] = self._list(row[12])
        return tuple(row)

    _writer_name = "qwen_meter ledger writer"

    def _check_record(self, record: Any) -> UsageRecord:
        return _checked(record)

    def _check_intent(self, intent: Any) -> Mapping[str, Any]:
        return _intent(intent)

    def append_many(self, records: Iterable[UsageRecord]) -> int:
        items: list[_Item] = [_checked(r) for r in records]
        return self._write(items) if items else 0

    def count(self) -> int:
        self.flush()
        with self._guard("cannot count records", LedgerLogError), self._tx(write=False) as ex:
            return int(ex.execute("SELECT count(*) FROM records").fetchone()[0])

    def __iter__(self) -> Iterator[UsageRecord]:
        self.flush()
        with self._guard("cannot read records", LedgerLogError), self._tx(write=False) as ex:
            rows = ex.execute("SELECT time, id, record, 0 FROM records UNION ALL "
                              "SELECT time, id, record, 1 FROM intents ORDER BY 1, 2").fetchall()
        where = f"ledger {mask_url(self.url)}, record"
        out = (record_or_warn(json_or_unreadable(row[2]), f"{where} {row[1]}",
                              pending_record if row[3] else UsageRecord.from_dict)
               for row in rows)
        return (record for record in out if record is not None)

    def pending_intents(self) -> list[dict[str, Any]]:
        self.flush()
        with self._guard("cannot read intents", LedgerLogError), self._tx(write=False) as ex:
            rows = ex.execute("SELECT record FROM intents ORDER BY time, id").fetchall()
        return [json.loads(row[0]) for row in rows]

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Write what is queued, stop every watch, release the database (again: nothing)."""
        if self._closed:
            return
        if os.getpid() != self._pid:  # a forked child: the connections are the parent's
            self._closed = True
            return
        if self._writer is not None:
            self._writer.close()
        for stop in list(self._watchers):
            stop()
        self._watchers.clear()
        self._release()
        self._closed = True

    def _release(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> SQLLedger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- keys -----------------------------------------------------------------------------
    def _key_params(self, e: KeyEntry, created: dt.datetime, updated: dt.datetime,
                    ) -> tuple[Any, ...]:
        return (e.name, e.hash, e.prefix, e.user, e.team, self._list(e.tags), e.upstream, e.rpm,
                e.tpm, self._list(e.models), self._json(budgets_json(e.budgets)),
                self._list(e.headers), e.revoked, self._time(created), self._time(updated))

    def _key(self, row: Any) -> KeyEntry:
        return KeyEntry(
            name=row[0], hash=row[1], prefix=row[2] or "", user=row[3], team=row[4],
            tags=self._unlist(row[5]) or (), upstream=row[6], rpm=row[7], tpm=row[8],
            models=self._unlist(row[9]), budgets=budgets_from(row[10]),
            headers=self._unlist(row[11]) or (), revoked=bool(row[12]),
            created=_text_time(row[13]), updated=_text_time(row[14]))

    def _bump(self, ex: Executor) -> int:
        ex.execute("UPDATE ledger_state SET version = version + 1 WHERE id = 1")
        version = int(ex.execute("SELECT version FROM ledger_state WHERE id = 1").fetchone()[0])
        self._changed(ex, version)
        return version

    def create_key(self, entry: KeyEntry) -> KeyEntry:
        entry = check_key(entry)
        stamp = now()
        with self._guard(f"cannot create key {entry.name!r}"), self._tx() as ex:
            placeholders = ", ".join("?" * len(KEY_COLUMNS))
            cursor = ex.execute(f"INSERT INTO keys ({', '.join(KEY_COLUMNS)}) VALUES "
                                f"({placeholders}) ON CONFLICT DO NOTHING",
                                self._key_params(entry, stamp, stamp))
            if cursor.rowcount != 1:
                taken = ex.execute("SELECT 1 FROM keys WHERE name = ?", (entry.name,)).fetchone()
                raise LedgerConflict(f"a key named {entry.name!r} already exists" if taken else
                                     f"key {entry.name!r}: another key has the same secret")
            self._bump(ex)
            row = ex.execute(f"{_KEY_SELECT} WHERE name = ?", (entry.name,)).fetchone()
        return self._key(row)

    def get_key(self, name: str) -> KeyEntry | None:
        with self._guard(f"cannot read key {name!r}"), self._tx(write=False) as ex:
            row = ex.execute(f"{_KEY_SELECT} WHERE name = ?", (check_name(name, "key"),)
                             ).fetchone()
        return None if row is None else self._key(row)

    def key_by_hash(self, key_hash: str) -> KeyEntry | None:
        if not isinstance(key_hash, str):
            return None
        with self._guard("cannot look a key up"), self._tx(write=False) as ex:
            row = ex.execute(f"{_KEY_SELECT} WHERE hash = ?", (key_hash,)).fetchone()
        return None if row is None else self._key(row)

    def list_keys(self, *, revoked: bool = True) -> list[KeyEntry]:
        where, params = ("", ()) if revoked else (" WHERE revoked = ?", (False,))
        with self._guard("cannot list keys"), self._tx(write=False) as ex:
            rows = ex.execute(f"{_KEY_SELECT}{where} ORDER BY name", params).fetchall()
        return [self._key(row) for row in rows]

    def update_key(self, name: str, **changes: object) -> KeyEntry:
        check_name(name, "key")
        with self._guard(f"cannot change key {name!r}"), self._tx() as ex:
            row = ex.execute(f"{_KEY_SELECT} WHERE name = ?{self._for_update()}",
                             (name,)).fetchone()
            if row is None:
                raise LedgerNotFound(f"no key named {name!r}")
            old = self._key(row)
            new = changed_key(old, changes)
            if new == old:
                return old
            stamp = now()
            params = self._key_params(new, stamp, stamp)[2:-2]
            sets = ", ".join(f"{c} = ?" for c in KEY_COLUMNS[2:-2])
            ex.execute(f"UPDATE keys SET {sets}, updated = ? WHERE name = ?",
                       (*params, self._time(stamp), name))
            self._bump(ex)
            row = ex.execute(f"{_KEY_SELECT} WHERE name = ?", (name,)).fetchone()
        return self._key(row)

    def revoke_key(self, name: str) -> KeyEntry:
        return self.update_key(name, revoked=True)

    # --- budgets --------------------------------------------------------------------------
    def set_budget(self, budget: ScopeBudget) -> ScopeBudget:
        budget = check_scope_budget(budget)
        spec = budget.budget
        with self._guard(f"cannot set budget {spec.name!r}"), self._tx() as ex:
            ex.execute("INSERT INTO budgets (scope, subject, name, lim, per, mode, updated) "
                       "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (scope, subject, name) DO "
                       "UPDATE SET lim = excluded.lim, per = excluded.per, mode = excluded.mode, "
                       "updated = excluded.updated",
                       (budget.scope, budget.subject, spec.name, spec.limit, spec.per, spec.mode,
                        self._time(now())))
            self._bump(ex)
        return budget

    def list_budgets(self) -> list[ScopeBudget]:
        from .base import BudgetSpec

        with self._guard("cannot list budgets"), self._tx(write=False) as ex:
            rows = ex.execute("SELECT scope, subject, name, lim, per, mode FROM budgets "
                              "ORDER BY scope, subject, name").fetchall()
        return [ScopeBudget(r[0], r[1], BudgetSpec(r[2], r[3], r[4], r[5])) for r in rows]

    def delete_budget(self, scope: str, subject: str, name: str) -> None:
        scope_of(scope)
        with self._guard(f"cannot delete budget {name!r}"), self._tx() as ex:
            cursor = ex.execute("DELETE FROM budgets WHERE scope = ? AND subject = ? AND "
                                "name = ?", (scope, subject, name))
            if cursor.rowcount != 1:
                raise LedgerNotFound(f"no {scope} budget {name!r} for {subject!r}")
            self._bump(ex)

    # --- version and alerts -----------------------------------------------------------------
    def version(self) -> int:
        with self._guard("cannot read the version"), self._tx(write=False) as ex:
            return int(ex.execute("SELECT version FROM ledger_state WHERE id = 1").fetchone()[0])

    def claim_alert(self, mark: str) -> bool:
        if not isinstance(mark, str) or not mark:
            raise LedgerError(f"claim_alert(mark=): expected a non-empty string, not {mark!r}")
        with self._guard("cannot claim an alert"), self._tx() as ex:
            cursor = ex.execute("INSERT INTO alert_marks (mark, claimed_at) VALUES (?, ?) "
                                "ON CONFLICT (mark) DO NOTHING", (mark, self._time(now())))
            return bool(cursor.rowcount == 1)


def _text_time(value: Any) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.timezone.utc).isoformat() if isinstance(value, dt.datetime) \
        else str(value)


def _checked(record: Any) -> UsageRecord:
    if not isinstance(record, UsageRecord):
        from ..base.checks import type_error

        raise type_error("Ledger.append(record=)", "a UsageRecord", record)
    return record


def _intent(intent: Any) -> Mapping[str, Any]:
    if not isinstance(intent, Mapping) or not isinstance(intent.get("id"), str):
        raise LedgerError("Ledger.append_intent(intent=): expected a journal intent with an id")
    return intent
