"""The SQLite store's window helpers: its SQL, its admit test on totals, and the in-process
copy of a key's window rows (see :mod:`.sqlite`)."""

from __future__ import annotations

import functools
from collections.abc import Sequence

from .base import WINDOW_BUCKETS, WindowCheck


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
    write = (f"INSERT INTO window (key, bucket, amount) VALUES {', '.join(['(?, ?, ?)'] * keys)} "
             "ON CONFLICT (key, bucket) DO UPDATE SET amount = amount + excluded.amount")
    return sums, rows, write


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
