"""The embedded ledger: one SQLite file (WAL mode), for one host — the default.

Several processes of one host may share the file: every transaction is ``BEGIN IMMEDIATE``
(writers queue on SQLite's lock, up to 30 s), records are idempotent by id, the recovery lock
is a lock file beside the database, and :meth:`SQLiteLedger.watch` polls the change version
every 0.5 s (SQLite has no notifications between processes).

Types: times are UTC ISO-8601 texts of fixed width (text order is time order), costs decimal
texts summed as :class:`~decimal.Decimal` by an aggregate registered on the connection (never
a float), lists JSON arrays.

Durability (``durability=``): ``"flush"`` (default) commits each write with
``synchronous=NORMAL`` — survives the process being killed, not a power cut; ``"fsync"``
uses ``synchronous=FULL`` — survives a power cut too; ``"buffered"`` commits in batches from a
background thread (a ``kill -9`` loses what was queued).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

from ..base.sqlite import enable_wal
from ..meter.logbase import file_lock
from .base import LedgerError
from .common import fail, iso_utc, mask_url
from .core import Executor
from .migrations import CREATE_TABLE, to_apply
from .spend import SpendQueries
from .watch import PollWatch


class SQLiteLedger(SpendQueries):
    """A ledger in an SQLite file (created with its schema if missing)."""

    _errors = (sqlite3.Error,)
    dialect = "sqlite"

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "flush",
                 url: str | None = None) -> None:
        self.path = Path(path)
        self._init_common(url or f"sqlite:///{self.path}", durability)
        self._lock = threading.RLock()
        try:
            self._db = connect(self.path, "FULL" if self.durability == "fsync" else "NORMAL")
        except sqlite3.Error as exc:
            raise fail(self.url, "cannot open", exc) from None
        try:
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _migrate(self) -> None:
        with self._guard("cannot migrate the schema"), self._tx() as ex:
            ex.execute(CREATE_TABLE)
            applied = {int(r[0]) for r in ex.execute("SELECT version FROM schema_migrations")}
            for version, sql in to_apply("sqlite", applied, mask_url(self.url)):
                for statement in statements(sql):
                    ex.execute(statement)
                ex.execute("INSERT INTO schema_migrations (version, applied_at) VALUES (?, ?)",
                           (version, iso_utc(dt.datetime.now(dt.timezone.utc))))

    @contextlib.contextmanager
    def _tx(self, *, write: bool = True) -> Iterator[Executor]:
        # IMMEDIATE: a transaction that reads then writes never fails to upgrade its lock.
        # A read-only one is deferred: in WAL mode it neither waits for writers nor blocks them.
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._db  # type: ignore[misc]  # a Connection has execute(sql, params)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _time(self, value: dt.datetime) -> Any:
        return iso_utc(value)

    def _money(self, value: Decimal | None) -> Any:
        return None if value is None else format(value, "f")

    def _list(self, value: tuple[str, ...] | list[str] | None) -> Any:
        return None if value is None else json.dumps(list(value), ensure_ascii=False)

    def _unlist(self, value: Any) -> tuple[str, ...] | None:
        return None if value is None else tuple(json.loads(value))

    def _release(self) -> None:
        with self._lock:
            self._db.close()

    def recovery_lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.path.with_name(self.path.name + ".lock"))

    def watch(self, callback: Callable[[int], None]) -> Callable[[], None]:
        path = self.path

        def read() -> int:
            # Read-only: a file deleted meanwhile is an error, not a new empty database.
            db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", timeout=30, uri=True)
            try:
                return int(db.execute("SELECT version FROM ledger_state").fetchone()[0])
            finally:
                db.close()

        watcher = PollWatch(read, callback, interval=0.5, start=self.version(),
                            name=f"qwen_meter ledger watch {path.name}")
        self._watchers.append(watcher.stop)
        return watcher.stop

    # --- spend (see .spend) ---------------------------------------------------------------
    def _group_sql(self, by: str, tz: str) -> tuple[str, str, tuple[Any, ...]]:
        if by == "tag":
            return "t.value", " LEFT JOIN json_each(records.tags) AS t", ()
        if by == "day":
            return "qm_day(time, ?)", "", (tz,)
        return _COLUMN[by], "", ()

    _cost_sql = "qm_dsum(cost)"


_COLUMN = {"key": "key_name", "user": "user_name", "team": "team", "model": "model"}


def connect(path: Path, synchronous: str) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=30, isolation_level=None, check_same_thread=False)
    enable_wal(db)
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.create_function("qm_day", 2, _day, deterministic=True)
    db.create_aggregate("qm_dsum", 1, _DecimalSum)  # type: ignore[arg-type]
    return db


def statements(script: str) -> Iterator[str]:
    """The statements of an SQL script, one by one (``executescript`` would commit the
    migration's transaction half-way)."""
    buffer = ""
    for line in script.splitlines(keepends=True):
        if not buffer and (not line.strip() or line.lstrip().startswith("--")):
            continue
        buffer += line
        if sqlite3.complete_statement(buffer):
            yield buffer.strip()
            buffer = ""
    if buffer.strip():
        raise LedgerError(f"migration script ends inside a statement: {buffer[:60]!r}")


def _day(time: str | None, tz: str) -> str | None:
    """The calendar date of a stored UTC time in zone ``tz``."""
    if time is None:
        return None
    import zoneinfo

    when = dt.datetime.fromisoformat(time)
    return when.astimezone(zoneinfo.ZoneInfo(tz)).date().isoformat()


class _DecimalSum:
    """``qm_dsum(cost)``: the exact sum of decimal texts, as a decimal text."""

    def __init__(self) -> None:
        self.total = Decimal(0)

    def step(self, value: str | None) -> None:
        if value is not None:
            with decimal.localcontext() as ctx:
                ctx.prec = 60  # wide enough that no sum of costs is ever rounded
                self.total += Decimal(value)

    def finalize(self) -> str:
        return format(self.total, "f")
