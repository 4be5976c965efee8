"""The SQLite store's money ledgers: reserve, commit, release and totals, each one
``BEGIN IMMEDIATE`` transaction of :class:`~.sqlite.SQLiteStore` (see :mod:`.base` for what
they promise)."""

from __future__ import annotations

import sqlite3
from contextlib import AbstractContextManager

from .base import (
    COMMITTED,
    EXPIRED,
    OK,
    REFUSED,
    RELEASED,
    TOMBSTONE_SECONDS,
    UNKNOWN,
    LedgerResult,
)


class SQLiteLedgers:
    """The ledger half of the SQLite store: needs the store's ``_tx`` (one transaction)."""

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        raise NotImplementedError

    @staticmethod
    def _live(db: sqlite3.Connection, key: str, now: float) -> tuple[int, int]:
        expired = db.execute("SELECT 1 FROM ledger WHERE key = ? AND expire_at <= ?",
                             (key, now)).fetchone()
        if expired:
            for table in ("ledger", "reservation", "settled"):
                db.execute(f"DELETE FROM {table} WHERE key = ?", (key,))
        # Dead leases become tombstones, so a late commit is recognised as expired.
        db.execute("INSERT OR REPLACE INTO settled (key, id, state, forget_at) "
                   "SELECT key, id, ?, lease_until + ? FROM reservation "
                   "WHERE key = ? AND lease_until <= ?", (EXPIRED, TOMBSTONE_SECONDS, key, now))
        db.execute("DELETE FROM reservation WHERE key = ? AND lease_until <= ?", (key, now))
        db.execute("DELETE FROM settled WHERE key = ? AND forget_at <= ?", (key, now))
        committed = db.execute("SELECT committed FROM ledger WHERE key = ?", (key,)).fetchone()
        reserved = db.execute("SELECT COALESCE(SUM(amount), 0) FROM reservation WHERE key = ?",
                              (key,)).fetchone()
        return (committed[0] if committed else 0), reserved[0]

    @staticmethod
    def _state(db: sqlite3.Connection, key: str, reservation: str) -> str:
        row = db.execute("SELECT state FROM settled WHERE key = ? AND id = ?",
                         (key, reservation)).fetchone()
        return str(row[0]) if row else UNKNOWN

    @staticmethod
    def _settle(db: sqlite3.Connection, key: str, reservation: str, state: str,
                forget_at: float) -> None:
        db.execute("INSERT OR REPLACE INTO settled (key, id, state, forget_at) "
                   "VALUES (?, ?, ?, ?)", (key, reservation, state, forget_at))

    @staticmethod
    def _take(db: sqlite3.Connection, key: str, reservation: str) -> float | None:
        """Remove a live reservation; its lease end, or None if it was not live."""
        row = db.execute("DELETE FROM reservation WHERE key = ? AND id = ? RETURNING lease_until",
                         (key, reservation)).fetchall()  # fetch all: the statement ends
        return float(row[0][0]) if row else None

    @staticmethod
    def _touch(db: sqlite3.Connection, key: str, expire_at: float | None, add: int = 0) -> None:
        db.execute("INSERT INTO ledger (key, committed, expire_at) VALUES (?, ?, ?) "
                   "ON CONFLICT (key) DO UPDATE SET committed = committed + excluded.committed, "
                   "expire_at = COALESCE(excluded.expire_at, expire_at)", (key, add, expire_at))

    def ledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                       lease_until: float, now: float, expire_at: float | None) -> LedgerResult:
        with self._tx() as db:
            committed, reserved = self._live(db, key, now)
            if db.execute("SELECT 1 FROM reservation WHERE key = ? AND id = ?",
                          (key, reservation)).fetchone():
                return LedgerResult(True, committed, reserved, OK)
            state = self._state(db, key, reservation)
            if state != UNKNOWN:
                return LedgerResult(False, committed, reserved, state)
            if limit is not None and committed + reserved + amount > limit:
                return LedgerResult(False, committed, reserved, REFUSED)
            db.execute("INSERT INTO reservation (key, id, amount, lease_until) "
                       "VALUES (?, ?, ?, ?)", (key, reservation, amount, lease_until))
            self._touch(db, key, expire_at)
            return LedgerResult(True, committed, reserved + amount, OK)

    def ledger_commit(self, key: str, reservation: str, amount: int, now: float,
                      expire_at: float | None, *, strict: bool = False) -> LedgerResult:
        with self._tx() as db:
            self._live(db, key, now)
            lease = self._take(db, key, reservation)
            if lease is not None:
                state, forget = OK, lease + TOMBSTONE_SECONDS
            else:
                state, forget = self._state(db, key, reservation), now + TOMBSTONE_SECONDS
                if state in (COMMITTED, RELEASED) or strict:
                    committed, reserved = self._live(db, key, now)
                    return LedgerResult(False, committed, reserved, state)
            self._touch(db, key, expire_at, amount)
            self._settle(db, key, reservation, COMMITTED, forget)
            committed, reserved = self._live(db, key, now)
            return LedgerResult(True, committed, reserved, state)

    def ledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        with self._tx() as db:
            self._live(db, key, now)
            lease = self._take(db, key, reservation)
            if lease is None:
                state, ok = self._state(db, key, reservation), False
            else:
                self._settle(db, key, reservation, RELEASED, lease + TOMBSTONE_SECONDS)
                state, ok = OK, True
            committed, reserved = self._live(db, key, now)
            return LedgerResult(ok, committed, reserved, state)

    def ledger_totals(self, key: str, now: float) -> LedgerResult:
        with self._tx() as db:
            committed, reserved = self._live(db, key, now)
            return LedgerResult(True, committed, reserved, OK)
