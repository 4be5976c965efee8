"""The dashboard's answers (the JSON of /work/plan's contract, docs/dashboard.md): each view
takes the query string as a mapping of lists and returns plain JSON values.

Aggregates sum ``cost12`` while the store says every cost fits it (else the exact ``cost``)
and cut local days and hours from epoch seconds where the zone keeps one offset.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
from collections import Counter, OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from ..duck import system_zone
from ..sql import quote
from . import tables
from .budgets import BudgetSpec, LimiterSpec, budget_view, live_state
from .money import money
from .query import Params, Query, parse_query
from .store import DIMS, RecordStore

TITLE = "qwen_meter dashboard"
_CACHE = 256


class Views:
    """The views over one :class:`RecordStore`.

    ``tz``: the default zone (the machine's); ``budgets``: from a gateway config; ``store``: a
    limits store URL (or object) for the budgets' live state and the ``limiters``' windows;
    ``refresh_seconds``: how often a page over a live source asks again (None: not live).
    """

    def __init__(self, records: RecordStore, *, tz: str | None = None, title: str | None = None,
                 budgets: Sequence[BudgetSpec] = (), store: Any = None,
                 limiters: Sequence[LimiterSpec] = (), refresh_seconds: int | None = 10,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        self.records = records
        self.tz = tz or system_zone()
        self.title = title or TITLE
        self.budgets = list(budgets)
        self.limiters = list(limiters)
        self.store = store
        self.refresh_seconds = refresh_seconds if records.live else None
        self.clock = clock or (lambda: dt.datetime.now(dt.timezone.utc))
        self._cache: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        self._cache_lock = threading.Lock()
        self._known: tuple[int, dict[str, set[str]], dict[str, list[str]]] | None = None
        self._last: dt.datetime | None = None
        self._counts: dict[str, Counter[str]] = {}
        self._counted = (-1, 0)  # (store generation, last rid counted)
        self._dims_lock = threading.Lock()

    # --- plumbing ------------------------------------------------------------------------------

    def refresh(self) -> bool:
        """Reads what live sources gained (answers cached before are dropped)."""
        changed = self.records.refresh()
        if changed:
            with self._cache_lock:
                self._cache.clear()
        return changed

    def _sql(self, text: str) -> list[tuple[Any, ...]]:
        with self.records.lock:
            return list(self.records.db.execute(text).fetchall())

    def _dims(self) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
        """Every value of each dimension, and the top 200 by calls (counted once, then for
        the records a refresh adds)."""
        with self._dims_lock:  # two requests must not both add the same new records
            return self._dims_locked()

    def _dims_locked(self) -> tuple[dict[str, set[str]], dict[str, list[str]]]:
        records = self.records
        if self._known is None or self._known[0] != records.version:
            if self._counted[0] != records.generation:
                self._counts = {dim: Counter() for dim in DIMS}
                self._counted = (records.generation, 0)
                if records.saved_dims is not None and records.generation == 0:
                    # counted by an earlier run over the cached records: only new ones now
                    rid, saved = records.saved_dims
                    self._counts = {dim: Counter(saved.get(dim, {})) for dim in DIMS}
                    self._counted = (0, rid)
            after = self._counted[1]
            # one scan for the plain dimensions (their values are never NULL: the one set
            # in a row of the grouping sets names its dimension), one for the tags
            plain = [d for d in DIMS if d != "tag"]
            columns = ", ".join(f'"{d}"' for d in plain)
            sets = ", ".join(f'("{d}")' for d in plain)
            for *values, n in self._sql(f"SELECT {columns}, count(*) FROM records "
                                        f"WHERE rid > {after} GROUP BY GROUPING SETS ({sets})"):
                dim, value = next((d, v) for d, v in zip(plain, values, strict=True)
                                  if v is not None)
                self._counts[dim][value] += int(n)
            self._counts["tag"].update(dict(self._sql(
                f"SELECT name, count(*) FROM {tables.source('tag', 'records', f'rid > {after}')} "
                "GROUP BY name")))
            self._counted = (records.generation, records.rid)
            if records.rid != after:
                records.save_dims(records.rid, {d: dict(c) for d, c in self._counts.items()})
            known = {dim: set(c) for dim, c in self._counts.items()}
            top = {dim: [n for n, _ in sorted(c.items(), key=lambda i: (-i[1], i[0]))[:200]]
                   for dim, c in self._counts.items()}
            self._last = self._sql("SELECT max(ts) FROM records")[0][0]
            self._known = (records.version, known, top)
        return self._known[1], self._known[2]

    def query(self, params: Params) -> Query:
        known, _ = self._dims()
        q = parse_query(params, default_tz=self.tz, last=self._last, known=known,
                        now=self.clock())
        q.cost = self.records.cost_column
        return q

    def _cached(self, name: str, params: Params, make: Callable[[], Any]) -> Any:
        # the minute is part of the key: "today" and the default range move with the clock
        minute = int(self.clock().timestamp() // 60)
        key = (name, self.records.version, minute,
               tuple(sorted((k, tuple(v)) for k, v in params.items())))
        with self._cache_lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        value = make()
        with self._cache_lock:
            self._cache[key] = value
            while len(self._cache) > _CACHE:
                self._cache.popitem(last=False)
        return value

    def answer(self, name: str, params: Params) -> Any:
        """The answer of view ``name`` (meta, overview, series, top, calls, problems)."""
        views: dict[str, Callable[[Params], Any]] = {
            "meta": self.meta, "overview": self.overview, "series": self.series,
            "top": self.top, "calls": self.calls, "problems": self.problems}
        view = views[name]
        if name == "overview" and self.store is not None:
            return view(params)  # live state is never cached
        return self._cached(name, params, lambda: view(params))

    # --- views ---------------------------------------------------------------------------------

    def meta(self, params: Params) -> dict[str, Any]:
        # the package's version without importing the package's top (it sits above this
        # layer); it is always loaded before any of its modules
        version = str(getattr(sys.modules.get("qwen_meter"), "__version__", "unknown"))
        q = self.query(params)
        _, top = self._dims()
        first, last = self._sql("SELECT min(ts), max(ts) FROM records")[0]
        currencies = [r[0] for r in self._sql(
            "SELECT currency FROM records WHERE currency IS NOT NULL AND cost IS NOT NULL "
            "GROUP BY 1 ORDER BY count(*) DESC, 1")]
        skips = self.records.skips
        return {"title": self.title, "source": self.records.label, "live": self.records.live,
                "refresh_seconds": self.refresh_seconds, "tz": q.tz_name,
                "first": tables.iso(first, q), "last": tables.iso(last, q),
                "since": q.since.isoformat(), "until": q.until.isoformat(),
                "currencies": currencies, "dims": top,
                "records": self._sql("SELECT count(*) FROM records")[0][0],
                "skipped": {"count": skips.count,
                            "examples": [{"source": s.source, "line": s.line, "reason": s.reason}
                                         for s in skips.examples[:20]]},
                "version": version, "notices": q.notices}

    def overview(self, params: Params) -> dict[str, Any]:
        q = self.query(params)
        totals = self._totals(q)
        now = self.clock().astimezone(q.tz)
        today = dt.datetime(now.year, now.month, now.day, tzinfo=q.tz)
        month = today.replace(day=1)
        tomorrow = today + dt.timedelta(days=1)
        spans = {}
        for label, low in (("today", today), ("month", month)):
            spans[label] = money(self._sql(
                f"SELECT currency, sum({q.cost}) FROM records WHERE "
                f"{q.where(since=low, until=tomorrow, clamp=False)} GROUP BY 1"))
        with self.records.lock:
            budgets = [budget_view(self.records.db, spec, self.clock(), q.tz)
                       for spec in self.budgets]
        state = None
        if self.store is not None and (self.budgets or self.limiters):
            state = live_state(self.budgets, self.store, self.limiters)
        return {"calls": totals["calls"], "tokens": totals["tokens"], "cost": totals["cost"],
                **spans, "budgets": budgets,
                "problems": {k: v["calls"] for k, v in totals["problems"].items()},
                "live_state": state, "notices": q.notices}

    def _totals(self, q: Query) -> dict[str, Any]:
        """Calls, tokens, cost and each kind of problem, from one scan grouped by currency,
        status and estimate (few groups; the kinds are added up here)."""
        sums = ", ".join(f"coalesce(sum({c}), 0)" for c in tables.TOKENS)
        rows = self._sql(f"SELECT currency, status, estimated, count(*), {sums}, sum({q.cost}) "
                         f"FROM records WHERE {q.where()} GROUP BY ALL")
        tokens = [0] * len(tables.TOKENS)
        calls = 0
        costs: list[tuple[Any, Any]] = []
        kinds: dict[str, list[tuple[Any, Any]]] = {k: [] for k in tables.PROBLEMS}
        counts = dict.fromkeys(tables.PROBLEMS, 0)
        for currency, status, estimated, n, *values, cost in rows:
            calls += int(n)
            tokens = [t + int(v) for t, v in zip(tokens, values, strict=True)]
            costs.append((currency, cost))
            for kind in tables.problem_kinds(status, estimated):
                counts[kind] += int(n)
                kinds[kind].append((currency, cost))
        return {"calls": calls,
                "tokens": dict(zip(("input", "output", "cached", "reasoning"), tokens,
                                   strict=True)),
                "cost": money(costs),
                "problems": {k: {"calls": counts[k], "cost": money(kinds[k])}
                             for k in tables.PROBLEMS}}

    def problems(self, params: Params) -> dict[str, Any]:
        q = self.query(params)
        rows = [{"kind": kind, **value} for kind, value in self._totals(q)["problems"].items()]
        any_problem = " OR ".join(f"({c})" for c in tables.PROBLEMS.values())
        recent = tables.call_rows(self._sql(
            f"SELECT {tables.CALL_COLUMNS} FROM records WHERE {q.where()} AND ({any_problem}) "
            "ORDER BY ts DESC, rid DESC LIMIT 50"), q)
        return {"rows": rows, "recent": recent, "notices": q.notices}

    def series(self, params: Params) -> dict[str, Any]:
        q = self.query(params)
        return tables.series(self._sql, q, params)

    def top(self, params: Params) -> dict[str, Any]:
        q = self.query(params)
        return tables.top(self._sql, q, params)

    def calls(self, params: Params) -> dict[str, Any]:
        q = self.query(params)
        return tables.calls(self._sql, q, params)

    def export_csv(self, params: Params) -> str:
        """A table (``table=top|calls|series``) as CSV text."""
        q = self.query(params)
        return tables.to_csv(self._sql, q, params)


def quoted(values: Sequence[str]) -> str:
    return ", ".join(quote(v) for v in values)
