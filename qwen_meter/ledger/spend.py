"""Spend pushed down to the database: one ``GROUP BY`` per query, cost summed per currency
exactly (PostgreSQL ``NUMERIC``; SQLite an aggregate over decimal texts), never a float and
never a sum across currencies."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from .base import SPEND_GROUPS, LedgerError, SpendRow
from .common import bounds, check_zone
from .core import SQLLedger


class SpendQueries(SQLLedger):
    """:meth:`spend` for a backend that says how to group (:meth:`_group_sql`) and sum."""

    #: the SQL of the cost sum (NULL costs skipped; no rows → 0 or NULL)
    _cost_sql = "sum(cost)"

    def _group_sql(self, by: str, tz: str) -> tuple[str, str, tuple[Any, ...]]:
        """``(expression, join, params)`` of the group of ``by``."""
        raise NotImplementedError

    def spend(self, by: str, *, since: dt.datetime | None = None,
              until: dt.datetime | None = None, tz: str = "UTC") -> list[SpendRow]:
        """Cost, calls and tokens grouped by ``by`` (one of :data:`SPEND_GROUPS`) and
        currency; ``since`` inclusive, ``until`` exclusive (naive datetimes are UTC); ``day``
        groups by the calendar date in ``tz`` (an IANA zone name)."""
        if by not in SPEND_GROUPS:
            raise LedgerError(f"spend(by=): expected one of {', '.join(SPEND_GROUPS)}, "
                              f"not {by!r}")
        tz = check_zone(tz)
        start, end = bounds(since, until)
        group, join, params = self._group_sql(by, tz)
        where, more = [], []
        if start is not None:
            where.append("time >= ?")
            more.append(self._time(start))
        if end is not None:
            where.append("time < ?")
            more.append(self._time(end))
        sql = (f"SELECT {group} AS grp, currency, {self._cost_sql}, count(*), "
               "coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
               f"FROM records{join}{' WHERE ' + ' AND '.join(where) if where else ''} "
               "GROUP BY grp, currency")
        self.flush()
        with self._guard(f"cannot sum spend by {by}"), self._tx(write=False) as ex:
            rows = ex.execute(sql, (*params, *more)).fetchall()
        out = [SpendRow(group=None if r[0] is None else str(r[0]), currency=r[1],
                        cost=Decimal(0) if r[2] is None else Decimal(r[2]), calls=int(r[3]),
                        prompt_tokens=int(r[4]), completion_tokens=int(r[5])) for r in rows]
        out.sort(key=lambda r: (r.group is None, r.group or "", r.currency is None,
                                r.currency or ""))
        return out
