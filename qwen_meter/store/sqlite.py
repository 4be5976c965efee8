"""The SQLite store: several processes on one host share one WAL-mode database file.

Every operation is one short ``BEGIN IMMEDIATE`` transaction, so a check and the write that
follows it cannot interleave with another process's.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from .base import (
    WINDOW_BUCKETS,
    AcquireResult,
    LedgerResult,
    Store,
    StoreUnavailable,
    WindowCheck,
    plan_acquire,
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS window (key TEXT NOT NULL, bucket INTEGER NOT NULL,
    amount INTEGER NOT NULL, PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, committed INTEGER NOT NULL,
    expire_at REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservation (key TEXT NOT NULL, id TEXT NOT NULL,
    amount INTEGER NOT NULL, lease_until REAL NOT NULL, PRIMARY KEY (key, id)) WITHOUT ROWID;
"""


class SQLiteStore(Store):
    """Counters in an SQLite file (created if missing)."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"SQLite store {self.path} is busy: {exc}") from exc
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            else:
                self._db.execute("COMMIT")

    @staticmethod
    def _buckets(db: sqlite3.Connection, key: str, bucket: int) -> list[int]:
        oldest = bucket - WINDOW_BUCKETS + 1
        db.execute("DELETE FROM window WHERE key = ? AND bucket < ?", (key, oldest))
        rows = dict(db.execute("SELECT bucket, amount FROM window WHERE key = ? AND bucket >= ?",
                               (key, oldest)).fetchall())
        return [rows.get(b, 0) for b in range(oldest, bucket + 1)]

    def window_acquire(self, checks: Sequence[WindowCheck], bucket: int) -> AcquireResult:
        with self._tx() as db:
            result = plan_acquire(checks, [self._buckets(db, c.key, bucket) for c in checks])
            if result.ok:
                db.executemany(
                    "INSERT INTO window (key, bucket, amount) VALUES (?, ?, ?) "
                    "ON CONFLICT (key, bucket) DO UPDATE SET amount = amount + excluded.amount",
                    [(c.key, bucket, c.amount) for c in checks])
            return result

    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        with self._tx() as db:
            db.execute("UPDATE window SET amount = MAX(0, amount + ?) WHERE key = ? AND bucket = ?",
                       (delta, key, bucket))

    def window_sum(self, key: str, bucket: int) -> int:
        with self._tx() as db:
            return sum(self._buckets(db, key, bucket))

    @staticmethod
    def _live(db: sqlite3.Connection, key: str, now: float) -> tuple[int, int]:
        expired = db.execute("SELECT 1 FROM ledger WHERE key = ? AND expire_at <= ?",
                             (key, now)).fetchone()
        if expired:
            db.execute("DELETE FROM ledger WHERE key = ?", (key,))
            db.execute("DELETE FROM reservation WHERE key = ?", (key,))
        db.execute("DELETE FROM reservation WHERE key = ? AND lease_until <= ?", (key, now))
        committed = db.execute("SELECT committed FROM ledger WHERE key = ?", (key,)).fetchone()
        reserved = db.execute("SELECT COALESCE(SUM(amount), 0) FROM reservation WHERE key = ?",
                              (key,)).fetchone()
        return (committed[0] if committed else 0), reserved[0]

    @staticmethod
    def _touch(db: sqlite3.Connection, key: str, expire_at: float | None, add: int = 0) -> None:
        db.execute("INSERT INTO ledger (key, committed, expire_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (key) DO UPDATE SET committed = committed + excluded.committed, "
                   "expire_at = COALESCE(excluded.expire_at, expire_at)", (key, add, expire_at))

    def ledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                       lease_until: float, now: float, expire_at: float | None) -> LedgerResult:
        with self._tx() as db:
            committed, reserved = self._live(db, key, now)
            if limit is not None and committed + reserved + amount > limit:
                return LedgerResult(False, committed, reserved)
            db.execute("INSERT OR REPLACE INTO reservation (key, id, amount, lease_until) "
                       "VALUES (?, ?, ?, ?)", (key, reservation, amount, lease_until))
            self._touch(db, key, expire_at)
            return LedgerResult(True, committed, reserved + amount)

    def ledger_commit(self, key: str, reservation: str, amount: int, now: float,
                      expire_at: float | None) -> LedgerResult:
        with self._tx() as db:
            self._live(db, key, now)
            db.execute("DELETE FROM reservation WHERE key = ? AND id = ?", (key, reservation))
            self._touch(db, key, expire_at, amount)
            committed, reserved = self._live(db, key, now)
            return LedgerResult(True, committed, reserved)

    def ledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        with self._tx() as db:
            db.execute("DELETE FROM reservation WHERE key = ? AND id = ?", (key, reservation))
            committed, reserved = self._live(db, key, now)
            return LedgerResult(True, committed, reserved)

    def ledger_totals(self, key: str, now: float) -> LedgerResult:
        with self._tx() as db:
            committed, reserved = self._live(db, key, now)
            return LedgerResult(True, committed, reserved)

    def close(self) -> None:
        with self._lock:
            self._db.close()
