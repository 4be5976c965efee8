"""The SQLite store: several processes on one host share one WAL-mode database file.

Every operation is one short write transaction (``BEGIN IMMEDIATE``, or for a quiet acquire one
autocommit statement, below), so a check and the write that follows it cannot interleave with
another process's; in a ``BEGIN IMMEDIATE`` transaction the window's second is read *inside* it
(after the write lock is held), so a caller that waited for the lock never writes into a second
it checked before the wait. Every :mod:`sqlite3` failure — locked past ``timeout``, disk full,
I/O error, a corrupt file — becomes :class:`~qwen_meter.store.StoreUnavailable`, and the
store's :class:`~qwen_meter.store.base.CircuitBreaker` skips the file for a while after repeated
failures.

Speed: while no other connection has committed since this one's last transaction (SQLite's
``data_version`` says so), the store's in-process copy of the keys' window rows is exactly the
file. Then an acquire decides on the copy and writes with one autocommit statement that
writes nothing unless ``data_version``, read inside it under the write lock it takes as
``BEGIN IMMEDIATE`` does, is still that one; so the decision is made on exactly what the file
holds when the write lands (the clock is read just before, and clamped as always: a stale
reading can only land in the newest second). If the statement writes nothing, or the copy
cannot decide (a new second to prune, a refusal to explain), the acquire is a ``BEGIN
IMMEDIATE`` transaction as above, where SQLite sums the windows itself in one statement.
A limiter's refund (``window_settle`` with a negative delta) waits for the store's next
acquire, which folds it into its own write, for at most ``refund_delay`` seconds (see
:mod:`.refunds`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ...base.sqlite import enable_wal
from .base import (
    WINDOW_BUCKETS,
    AcquireResult,
    CircuitBreaker,
    Store,
    StoreUnavailable,
    When,
    WindowCheck,
    check_seconds,
    plan_acquire,
)
from .refunds import Refund, RefundQueue, track
from .sqlite_ledger import SQLiteLedgers
from .sqlite_window import (
    ADJUST_SQL,
    SCHEMA,
    Window,
    adjust_copy,
    fits,
    fold,
    live_buckets,
    mark_newest,
    quiet_sql,
    upsert_with,
    window_sql,
)


class SQLiteStore(SQLiteLedgers, Store):
    """Counters in an SQLite file (created if missing).

    ``timeout`` bounds the wait for another process's write lock; ``breaker`` (default: open
    after 3 failures in a row, for 10 s) stops callers from waiting on a broken file each call.
    ``refund_delay`` bounds how long a limiter's refund (a reconcile that used fewer tokens
    than it reserved, a release) may wait for this store's next transaction before it is
    written on its own: other processes see it that much late at most, which only makes them
    refuse more. ``0`` writes every refund at once, in a transaction of its own.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 5.0,
                 breaker: CircuitBreaker | None = None, refund_delay: float = 0.05) -> None:
        self.path = os.fspath(path)
        self.timeout = check_seconds(timeout, "SQLite store timeout")
        self.refund_delay = check_seconds(refund_delay, "SQLite store refund_delay") or 0.0
        self._refunds = RefundQueue(self.refund_delay, self.flush)
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
            for statement in filter(str.strip, SCHEMA.split(";")):
                self._db.execute(statement)
            self._cursor = self._db.cursor()  # one cursor for the window's hot path
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"cannot open SQLite store {self.path}: {exc}") from exc
        track(self)

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

    @contextmanager
    def _refund_tx(self) -> Iterator[list[Refund]]:
        """:meth:`_tx` that first takes the refunds waiting (yielded, for the caller to apply
        or fold into its own write): given back if the transaction fails, so none is lost.
        ``window_acquire`` spells this out by hand (see there)."""
        self.breaker.before()
        with self._lock:
            self._begin()
            refunds = self._refunds.take()
            try:
                yield refunds
                self._cursor.execute("COMMIT")
            except BaseException as exc:
                self._refunds.give_back(refunds)
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

    def window_acquire(self, checks: Sequence[WindowCheck], bucket: When) -> AcquireResult:
        # _refund_tx() by hand: this is the limiter's hot path, and a generator-based context
        # manager costs as much as a tenth of the whole transaction
        self.breaker.before()
        with self._lock:
            if self._version is not None:  # the copy may be the file: try the one statement
                quiet = self._quiet(checks, bucket)
                if quiet is not None:
                    self.breaker.success()
                    return quiet
            self._begin()
            refunds = self._refunds.take()
            try:
                result = self._acquire(checks, bucket, refunds)
                self._cursor.execute("COMMIT")
            except BaseException as exc:
                self._refunds.give_back(refunds)
                self._abort(exc)
                raise
        self.breaker.success()
        return result

    def _apply(self, refunds: list[Refund]) -> None:
        """Write adjustments (delta, key, bucket) in the open transaction, and in the copy."""
        self._cursor.executemany(ADJUST_SQL, refunds)
        adjust_copy(self._windows, refunds)

    def _quiet(self, checks: Sequence[WindowCheck], bucket: When) -> AcquireResult | None:
        """The acquire as one autocommit statement, or None (nothing written: take the full
        transaction). Only when the copy holds every key, each already has a row in the
        second (no pruning due), every waiting refund folds into the write and the copy says
        the call fits; the statement writes only if SQLite's ``data_version`` — read inside it,
        under the write lock it takes like ``BEGIN IMMEDIATE`` — is still the one of this
        connection's last transaction: then nobody else has committed, the copy was the file,
        and the decision made on it stands."""
        windows = self._windows
        mirror = []
        for check in checks:
            window = windows.get(check.key)
            if window is None:
                return None
            mirror.append(window)
        now = bucket() if callable(bucket) else None
        second = int(now // 1) if now is not None else int(bucket)  # type: ignore[arg-type]
        for window in mirror:  # the clamp
            if window.newest is not None and window.newest > second:
                second = window.newest
        oldest = second - WINDOW_BUCKETS + 1
        for window in mirror:
            if window.newest != second or window.low is None or window.low < oldest:
                return None
        refunds = self._refunds.take()
        folded: list[Refund] = []
        if refunds:
            rest, folded = fold(self._windows, refunds)
            if rest:  # the copy has changed (folded): read again in the transaction
                return self._unquiet(refunds)
        if not fits(checks, [v for w in mirror for v in (w.total, w.rows[second])]):
            if folded:  # the transaction path says when it would fit
                return self._unquiet(refunds)
            return None  # the copy is unchanged: the transaction can still use it
        params: list[Any] = []
        for check in checks:
            params += (check.key, second, check.amount)
        if folded:
            params = upsert_with(params, folded)[1]
        rows = len(params) // 3
        try:
            written = self._cursor.execute(quiet_sql(rows), (*params, self._version)).rowcount
        except BaseException as exc:
            self._refunds.give_back(refunds)
            self._abort(exc)
            raise
        if written != rows:  # another connection committed since: the copy is not the file
            return self._unquiet(refunds)
        for check, window in zip(checks, mirror, strict=True):
            window.rows[second] += check.amount
            window.total += check.amount
        return AcquireResult(True, 0, None, second, now)

    def _unquiet(self, refunds: list[Refund]) -> AcquireResult | None:
        """None: the quiet path gives up, nothing written. The refunds wait again, the copy
        (it may hold folded refunds, or be stale) is read again by the transaction."""
        self._refunds.give_back(refunds)
        self._forget()
        return None

    def _acquire(self, checks: Sequence[WindowCheck], bucket: When,
                 refunds: list[Refund]) -> AcquireResult:
        """The acquire, inside its transaction; ``refunds`` are written first."""
        keys = [c.key for c in checks]
        sums_sql, rows_sql, write = window_sql(len(keys))
        cursor = self._cursor
        now = bucket() if callable(bucket) else None  # read under the write lock
        second = int(now // 1) if now is not None else int(bucket)  # type: ignore[arg-type]
        mirror = self._mirror(keys, second)  # read before the refunds: they go in it next
        folded: list[Refund] = []
        if refunds:
            if mirror is not None:
                refunds, folded = fold(self._windows, refunds)
            if refunds:
                self._apply(refunds)
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
        params: list[Any] = []
        for check in checks:
            params += (check.key, second, check.amount if result.ok else 0)
        if folded:  # and for the refunds the copy took: no statement of their own
            write, params = upsert_with(params, folded)
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
        if self._refunds.pending:  # the refunds waiting go first, in the same transaction
            self._write([(delta, key, bucket)])
            return
        # One statement is its own atomic transaction: no BEGIN/COMMIT round needed.
        self.breaker.before()
        with self._lock:
            try:
                self._apply([(delta, key, bucket)])
            except sqlite3.Error as exc:
                self._forget()
                self.breaker.failure()
                raise StoreUnavailable(f"SQLite store {self.path} failed: {exc}") from exc
        self.breaker.success()

    def window_settle(self, key: str, bucket: int, delta: int) -> None:
        if delta < 0 and self.refund_delay and not self._refunds.closed:  # with the next tx
            self._refunds.add(key, bucket, delta)
        else:
            self.window_adjust(key, bucket, delta)

    async def awindow_settle(self, key: str, bucket: int, delta: int) -> None:
        if delta < 0 and self.refund_delay and not self._refunds.closed:  # no I/O: inline
            self._refunds.add(key, bucket, delta)
        else:
            await self.awindow_adjust(key, bucket, delta)

    def flush(self) -> None:
        """Write the refunds waiting for the next transaction now (the timer, ``close`` and
        interpreter exit call it; so may a caller that wants other processes to see them)."""
        if self._refunds.pending:
            self._write([])

    def _write(self, extra: list[Refund]) -> None:
        """The waiting refunds, then ``extra``, in one transaction."""
        with self._refund_tx() as refunds:
            self._apply(refunds + extra)

    def window_sum(self, key: str, bucket: int) -> int:
        # The window as the next acquire sees it (clamped second), after the refunds waiting.
        with self._refund_tx() as refunds:
            self._apply(refunds)
            self._forget()  # it marks and prunes rows: simpler to read the file again after
            db = self._db
            row = db.execute("SELECT MAX(bucket) FROM window WHERE key = ?", (key,)).fetchone()
            end = bucket if row[0] is None else max(bucket, row[0])
            mark_newest(db, [key], end)
            return sum(live_buckets(db, key, end))

    def close(self) -> None:
        self._refunds.close()
        try:
            self.flush()
        except StoreUnavailable as exc:
            import logging

            logging.getLogger("qwen_meter.store").warning(
                "refunds not written before close (the window over-counts until they leave "
                "it): %s", exc)
        with self._lock:
            self._db.close()
