"""The SQLite store's window helpers: its schema and SQL, its admit test on totals, and the
in-process copy of a key's window rows (see :mod:`.sqlite`)."""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence
from typing import Any

from .base import WINDOW_BUCKETS, WindowCheck
from .refunds import Refund

#: The adjust (reconcile, release, refund): never below 0, never a row that is not there.
ADJUST_SQL = "UPDATE window SET amount = MAX(0, amount + ?) WHERE key = ? AND bucket = ?"

SCHEMA = """
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



@functools.lru_cache(maxsize=8)
def window_sql(keys: int) -> tuple[str, str, str]:
    """The acquire's statements for ``keys`` keys (parameters: the keys, then the clock's
    second): the clamped second and each key's window total and current-second amount, all
    computed by SQLite in one statement (every sub-select is one B-tree search or one range of
    at most 61 rows); every row of the window, read only for a refusal, to say when it would
    fit; and the write, one statement for every key."""
    second = f"?{keys + 1}"
    newest = ", ".join(f"COALESCE((SELECT MAX(bucket) FROM window WHERE key = ?{i}), {second})"
                       for i in range(1, keys + 1))
    columns = ", ".join(
        f"(SELECT SUM(amount) FROM window WHERE key = ?{i} AND bucket >= now - "
        f"{WINDOW_BUCKETS - 1}), (SELECT amount FROM window WHERE key = ?{i} AND bucket = now)"
        for i in range(1, keys + 1))
    sums = (f"WITH clamp (now) AS (SELECT MAX({second}, {newest})) "
            f"SELECT now, {columns} FROM clamp")
    rows = ("SELECT key, bucket, amount FROM window WHERE key IN "
            f"({', '.join('?' * keys)}) AND bucket >= ?")
    return sums, rows, upsert_sql(keys)


@functools.lru_cache(maxsize=16)
def upsert_sql(rows: int) -> str:
    """The acquire's write for ``rows`` (key, bucket, amount) rows (its keys, and the refunds
    folded into it)."""
    return (f"INSERT INTO window (key, bucket, amount) VALUES {', '.join(['(?, ?, ?)'] * rows)} "
            "ON CONFLICT (key, bucket) DO UPDATE SET amount = amount + excluded.amount")


@functools.lru_cache(maxsize=16)
def quiet_sql(rows: int) -> str:
    """The acquire's write as one autocommit statement (parameters: the rows, then the
    ``data_version`` the copy was read at): it writes nothing unless that is still SQLite's
    ``data_version``, read inside the statement, under its write lock."""
    return ("INSERT INTO window (key, bucket, amount) SELECT column1, column2, column3 FROM "
            f"(VALUES {', '.join(['(?, ?, ?)'] * rows)}) WHERE (SELECT data_version FROM "
            "pragma_data_version) = ? "
            "ON CONFLICT (key, bucket) DO UPDATE SET amount = amount + excluded.amount")


def upsert_with(params: list[Any], refunds: Sequence[Refund]) -> tuple[str, list[Any]]:
    """The write of ``params`` (key, bucket, amount, ...) with ``refunds`` (delta, key, bucket,
    one per row, as :meth:`RefundQueue.take` merges them) added: a refund to a row already
    written adds to its amount (the common case: a reconcile in the same second), any other
    is one row more."""
    rows = len(params) // 3
    for delta, key, bucket in refunds:
        for i in range(0, 3 * rows, 3):
            if params[i + 1] == bucket and params[i] == key:
                params[i + 2] += delta
                break
        else:
            params += (key, bucket, delta)
    return upsert_sql(len(params) // 3), params


def fits(checks: Sequence[WindowCheck], sums: Sequence[int | None]) -> bool:
    """Whether every check fits its window (``plan_acquire``'s admit test, on the totals SQLite
    summed: ``sums`` holds each key's window total and its current second's amount)."""
    for i, check in enumerate(checks):
        total, current = sums[2 * i] or 0, sums[2 * i + 1] or 0
        if check.per_second is not None and current > 0 \
                and current + check.amount > check.per_second:
            return False
        if total + check.amount > check.limit:
            return False
    return True


class Window:
    """One key's rows of the window table as this connection last saw and wrote them."""

    __slots__ = ("low", "newest", "rows", "total")

    def __init__(self, rows: dict[int, int]) -> None:
        self.rows = rows
        self.total = sum(rows.values())  # always the sum of ``rows``
        self.newest = max(rows, default=None)
        self.low = min(rows, default=None)

    def prune(self, oldest: int) -> None:
        """Drops the seconds before ``oldest`` (out of every later window)."""
        if self.low is not None and self.low < oldest:
            self.rows = {b: v for b, v in self.rows.items() if b >= oldest}
            self.total = sum(self.rows.values())
            self.low = min(self.rows, default=None)


def adjust_copy(windows: dict[str, Window], refunds: Sequence[Refund]) -> None:
    """The adjust's UPDATE (``MAX(0, amount + delta)`` on a row that exists), in the copy."""
    for delta, key, bucket in refunds:
        window = windows.get(key)
        if window is not None and bucket in window.rows:
            old = window.rows[bucket]
            window.rows[bucket] = max(0, old + delta)
            window.total += window.rows[bucket] - old


def fold(windows: dict[str, Window], refunds: list[Refund]) -> tuple[list[Refund], list[Refund]]:
    """(the rest, the folded): refunds applied to the copy now, to be written by the acquire's
    own upsert — those whose row the copy holds (so it is in the file) and that leave it >= 0
    (so the upsert's plain addition is the adjust's ``MAX(0, ...)``)."""
    rest: list[Refund] = []
    folded: list[Refund] = []
    for refund in refunds:
        delta, key, bucket = refund
        window = windows.get(key)
        old = None if window is None else window.rows.get(bucket)
        if window is None or old is None or old + delta < 0:
            rest.append(refund)
        else:
            window.rows[bucket] = old + delta
            window.total += delta
            folded.append(refund)
    return rest, folded


def live_buckets(db: sqlite3.Connection, key: str, bucket: int) -> list[int]:
    """The 61 seconds of ``key``'s window ending at ``bucket``, oldest first (older rows are
    deleted)."""
    oldest = bucket - WINDOW_BUCKETS + 1
    db.execute("DELETE FROM window WHERE key = ? AND bucket < ?", (key, oldest))
    rows = dict(db.execute("SELECT bucket, amount FROM window WHERE key = ? AND bucket >= ? "
                           "AND bucket <= ?", (key, oldest, bucket)).fetchall())
    return [rows.get(b, 0) for b in range(oldest, bucket + 1)]


def mark_newest(db: sqlite3.Connection, keys: list[str], second: int) -> None:
    """Remember the newest second looked at (an empty bucket row): the clamp's floor."""
    db.executemany("INSERT INTO window (key, bucket, amount) VALUES (?, ?, 0) "
                   "ON CONFLICT (key, bucket) DO NOTHING", [(k, second) for k in keys])
