"""The SQLite store: several processes on one host share one WAL-mode database file.

Every operation is one short ``BEGIN IMMEDIATE`` transaction, so a check and the write that
follows it cannot interleave with another process's; the window's second is read *inside* it
(after the write lock is held), so a caller that waited for the lock never writes into a second
it checked before the wait. Every :mod:`sqlite3` failure — locked past ``timeout``, disk full,
I/O error, a corrupt file — becomes :class:`~qwen_meter.store.StoreUnavailable`, and the
store's :class:`~qwen_meter.store.base.CircuitBreaker` skips the file for a while after repeated
failures.

Speed: a limiter's acquire reads SQLite's ``data_version`` inside its transaction; while no
other connection has committed since this one's last transaction, the store's in-process copy
of the keys' window rows is exactly the file, and the acquire reads nothing else (one write,
as a bare transaction would). Otherwise SQLite sums the windows itself, in one statement.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from ...base.sqlite import enable_wal
from .base import (
    COMMITTED,
    EXPIRED,
    OK,
    REFUSED,
    RELEASED,
    TOMBSTONE_SECONDS,
    UNKNOWN,
    WINDOW_BUCKETS,
    AcquireResult,
    CircuitBreaker,
    LedgerResult,
    Store,
    StoreUnavailable,
    When,
    WindowCheck,
    check_seconds,
    plan_acquire,
)
from .sqlite_window import Window, fits, window_sql

_SCHEMA = """
CREATE TABLE IF NOT EXISTS window (key TEXT NOT NULL, bucket INTEGER NOT NULL,
    amount INTEGER NOT NULL, PRIMARY KEY (key, bucket)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS ledger (key TEXT PRIMARY KEY, committed INTEGER NOT NULL,
    expire_at REAL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS reservation (key TEXT NOT NULL, id TEXT NOT NULL,
    amount INTEGER NOT NULL, lease_until REAL NOT NULL, PRIMARY KEY (key, id)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS settled (key TEXT NOT NULL, id TEXT NOT NULL, state TEXT NOT NULL,
    forget_at REAL NOT NULL, PRIMARY KEY (key, id)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS settled_forget ON settled (key, forget_at);
CREATE INDEX IF NOT EXISTS reservation_lease ON reservation (key, lease_until);
"""


class SQLiteStore(Store):
    """Counters in an SQLite file (created if missing).

    ``timeout`` bounds the wait for another process's write lock; ``breaker`` (default: open
    after 3 failures in a row, for 10 s) stops callers from waiting on a broken file each call.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0,
                 breaker: CircuitBreaker | None = None) -> None:
        self.path = os.fspath(path)
        self.timeout = check_seconds(timeout, "SQLite store timeout")
        self.breaker = breaker or CircuitBreaker(name=f"SQLite store {self.path}")
        self._lock = threading.Lock()
        # The window rows of the keys this connection used, as they are in the file, exact
        # while no other connection has committed since (SQLite's data_version, read under the
        # write lock, says so); then an acquire reads nothing but that one number.
        self._windows: dict[str, Window] = {}
        self._version: int | None = None
        try:
            self._db = sqlite3.connect(self.path, timeout=self.timeout or 0.0,
                                       isolation_level=None, check_same_thread=False)
            enable_wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)
            self._cursor = self._db.cursor()  # one cursor for the window's hot path
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self.breaker.before()
        with self._lock:
            self._begin()
            try:
                yield self._db
                self._cursor.execute("COMMIT")
            except BaseException as exc:
                self._abort(exc)
                raise
        self.breaker.success()

    def _begin(self) -> None:
        """``BEGIN IMMEDIATE`` (the write lock, waiting up to ``timeout``); under ``_lock``."""
        try:
            self._cursor.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            self.breaker.failure()
            raise StoreUnavailable(f"SQLite store {self.path} is busy: {exc}") from exc

    def _abort(self, exc: BaseException) -> None:
        """Rolls back after ``exc``; raises it as StoreUnavailable if SQLite's (else the caller
        re-raises it as it is)."""
        self._forget()  # rolled back: the copy may hold writes the file does not
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolls back by itself when a statement fails this badly
        if isinstance(exc, sqlite3.Error):
            self.breaker.failure()
            raise StoreUnavailable(f"SQLite store {self.path} failed: {exc}") from exc

    def _forget(self) -> None:
        self._windows.clear()
        self._version = None

    def _mirror(self, keys: list[str], second: int) -> list[Window] | None:
        """Each key's window from the copy, or None (the copy is not exact: another connection
        committed since this one's last transaction, or none was made yet). Called inside the
        transaction, under the write lock: nobody else can commit until it ends."""
        cursor = self._cursor
        version = cursor.execute("PRAGMA data_version").fetchone()[0]
        if version != self._version:
            self._windows.clear()
            self._version = version
            return None
        windows = self._windows
        missing = [key for key in keys if key not in windows]
        if missing:  # a key new to the copy: its rows that can still be in a window
            rows: dict[str, dict[int, int]] = {key: {} for key in missing}
            sql = ("SELECT key, bucket, amount FROM window WHERE key IN "
                   f"({', '.join('?' * len(missing))}) AND bucket >= ?")
            for key, second_of, amount in cursor.execute(sql, (*missing,
                                                               second - WINDOW_BUCKETS + 1)):
                rows[key][second_of] = amount
            for key in missing:
                windows[key] = Window(rows[key])
        return [windows[key] for key in keys]

    @staticmethod
    def _buckets(db: sqlite3.Connection, key: str, bucket: int) -> list[int]:
        oldest = bucket - WINDOW_BUCKETS + 1
        db.execute("DELETE FROM window WHERE key = ? AND bucket < ?", (key, oldest))
        rows = dict(db.execute("SELECT bucket, amount FROM window WHERE key = ? AND bucket >= ? "
                               "AND bucket <= ?", (key, oldest, bucket)).fetchall())
        return [rows.get(b, 0) for b in range(oldest, bucket + 1)]

    def window_acquire(self, checks: Sequence[WindowCheck], bucket: When) -> AcquireResult:
        # _tx() by hand: this is the limiter's hot path, and a generator-based context manager
        # costs as much as a tenth of the whole transaction
        self.breaker.before()
        with self._lock:
            self._begin()
            try:
                result = self._acquire(checks, bucket)
                self._cursor.execute("COMMIT")
            except BaseException as exc:
                self._abort(exc)
                raise
        self.breaker.success()
        return result

    def _acquire(self, checks: Sequence[WindowCheck], bucket: When) -> AcquireResult:
        """The acquire, inside its transaction."""
        keys = [c.key for c in checks]
        sums_sql, rows_sql, write = window_sql(len(keys))
        cursor = self._cursor
        now = bucket() if callable(bucket) else None  # read under the write lock
        second = int(now // 1) if now is not None else int(bucket)  # type: ignore[arg-type]
        mirror = self._mirror(keys, second)
        sums: list[int | None]
        if mirror is not None:  # nobody else wrote: the copy is the file
            for window in mirror:  # the clamp: never write behind a key's newest second
                if window.newest is not None and window.newest > second:
                    second = window.newest
            oldest = second - WINDOW_BUCKETS + 1
            sums = []
            for window in mirror:
                if window.low is not None and window.low < oldest:
                    window.prune(oldest)
                sums += (window.total,
                         window.rows[second] if window.newest == second else None)
        else:
            # The clamp and the window totals of that second, in one statement: no row of
            # the window comes to Python.
            second, *sums = cursor.execute(sums_sql, (*keys, second)).fetchone()
            oldest = second - WINDOW_BUCKETS + 1
        if fits(checks, sums):
            result = AcquireResult(True, bucket=second)
        else:  # refused: the full per-second view says when it would fit
            seen: dict[str, dict[int, int]] = {key: {} for key in keys}
            for key, second_of, amount in cursor.execute(rows_sql, (*keys, oldest)):
                seen[key][second_of] = amount
            result = plan_acquire(
                checks, [[seen[c.key].get(b, 0) for b in range(oldest, second + 1)]
                         for c in checks], second)
        # The written row (the amount, or 0 when refused) also marks the newest second
        # looked at: the clamp's floor. One statement for every key.
        params: list[object] = []
        for check in checks:
            params += (check.key, second, check.amount if result.ok else 0)
        cursor.execute(write, params)
        # A key's first write in a new second (it had no row there) drops its seconds that
        # left the window: once per second per key, not on every call.
        stale = [(key, oldest) for i, key in enumerate(keys) if sums[2 * i + 1] is None]
        if stale:
            cursor.executemany("DELETE FROM window WHERE key = ? AND bucket < ?", stale)
        if mirror is not None:  # the same write in the copy
            for check, window in zip(checks, mirror, strict=True):
                amount = check.amount if result.ok else 0
                window.rows[second] = window.rows.get(second, 0) + amount
                window.total += amount
                window.newest = second
                if window.low is None:
                    window.low = second
        return AcquireResult(result.ok, result.retry_buckets, result.refused_key, second, now)

    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        # One statement is its own atomic transaction: no BEGIN/COMMIT round needed.
        self.breaker.before()
        with self._lock:
            try:
                self._cursor.execute("UPDATE window SET amount = MAX(0, amount + ?) "
                                     "WHERE key = ? AND bucket = ?", (delta, key, bucket))
            except sqlite3.Error as exc:
                self._forget()
                self.breaker.failure()
                raise StoreUnavailable(f"SQLite store {self.path} failed: {exc}") from exc
            window = self._windows.get(key)
            if window is not None and bucket in window.rows:  # the same change in the copy
                old = window.rows[bucket]
                window.rows[bucket] = max(0, old + delta)
                window.total += window.rows[bucket] - old
        self.breaker.success()

    def window_sum(self, key: str, bucket: int) -> int:
        with self._tx() as db:  # the window as the next acquire sees it (clamped second)
            self._forget()  # it marks and prunes rows: simpler to read the file again after
            row = db.execute("SELECT MAX(bucket) FROM window WHERE key = ?", (key,)).fetchone()
            end = bucket if row[0] is None else max(bucket, row[0])
            self._mark(db, [key], end)
            return sum(self._buckets(db, key, end))

    @staticmethod
    def _mark(db: sqlite3.Connection, keys: list[str], second: int) -> None:
        """Remember the newest second looked at (an empty bucket row): the clamp's floor."""
        db.executemany("INSERT INTO window (key, bucket, amount) VALUES (?, ?, 0) "
                       "ON CONFLICT (key, bucket) DO NOTHING", [(k, second) for k in keys])

    # --- ledgers ----------------------------------------------------------------------------

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

    def close(self) -> None:
        with self._lock:
            self._db.close()
