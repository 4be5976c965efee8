"""The views' tables: series over time, top-N, the calls behind a number, and their CSV.

SQL runs through a ``run(text) -> rows`` callable (the store's locked connection); names of
dimensions come from :data:`.store.DIMS` only, values are quoted.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from ..sql import quote
from .money import UNPRICED, amount_text, money
from .query import BadParam, Params, Query, choice, instant, one, whole
from .store import DIMS

Run = Callable[[str], list[tuple[Any, ...]]]
TOKENS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
#: What makes a call a problem of each kind (a call can be of several).
PROBLEMS = {"refused": "status = 'refused'", "error": "status = 'error'",
            "estimated": "estimated", "cancelled": "status = 'cancelled'",
            "lost": "status = 'lost'"}


def problem_kinds(status: str, estimated: bool) -> list[str]:
    """The kinds of :data:`PROBLEMS` a call of ``status`` (``estimated`` or not) is."""
    kinds = [status] if status in ("refused", "error", "cancelled", "lost") else []
    return [*kinds, "estimated"] if estimated else kinds


CALL_FIELDS = ("id", "time", "model", "served_model", "status", "key", "user", "tags",
               "region", "endpoint", "prompt_tokens", "completion_tokens", "cached_tokens",
               "reasoning_tokens", "cost", "currency", "latency_ms", "error",
               "usage_estimated", "unpriced", "source", "line")
CALL_COLUMNS = ('id, ts, model, served_model, status, "key", "user", tags, region, endpoint, '
                'prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens, cost, '
                'currency, latency_ms, error, estimated, unpriced, source, line')
TOP_N = 10
#: The most buckets a series has (a chart of more is no use, and its answer is large).
MAX_BUCKETS = 20_000
OTHER = "(other)"
_METRICS = ("cost", "tokens", "calls")


def iso(value: dt.datetime | None, q: Query) -> str | None:
    return None if value is None else value.astimezone(q.tz).isoformat()


def name_sql(by: str) -> str:
    """The expression naming a row's group (``tag``: the unnested ``name`` column)."""
    if by == "none":
        return "'total'"
    if by == "tag":
        return "name"
    return f'"{by}"'


def source(by: str, rel: str, where: str) -> str:
    """``rel`` filtered by ``where``; for ``tag`` one row per tag (``(none)`` for none)."""
    condition = f" WHERE {where}" if where else ""
    if by != "tag":
        return f"(SELECT * FROM {rel}{condition})"
    return (f"(SELECT *, unnest(CASE WHEN len(tags) = 0 THEN ['(none)'] "
            f"ELSE list_distinct(tags) END) AS name FROM {rel}{condition})")


def relation(q: Query) -> str:
    """The records, one call a row."""
    return "(SELECT *, 1::BIGINT AS calls FROM records)"


def _by(params: Params, default: str = "model", none: bool = True) -> str:
    return choice(params, "by", (*DIMS, "none") if none else DIMS, default)


def series(run: Run, q: Query, params: Params) -> dict[str, Any]:
    metric = choice(params, "metric", _METRICS, "cost")
    by = _by(params)
    bucket = choice(params, "bucket", ("hour", "day"), "day")
    count = (q.until - q.since) / (dt.timedelta(hours=1) if bucket == "hour"
                                   else dt.timedelta(days=1))
    if count > MAX_BUCKETS:
        raise BadParam("bucket", f"{bucket}s from {q.since.date()} to {q.until.date()} are "
                                 f"{int(count):,} buckets, more than {MAX_BUCKETS:,}: choose "
                                 "a shorter range or a longer bucket")
    value = {"cost": q.cost, "tokens": "prompt_tokens + completion_tokens",
             "calls": "calls"}[metric]
    money_metric = metric == "cost"
    currency = "coalesce(currency, '')" if money_metric else "''"
    where = q.where() + (" AND cost IS NOT NULL" if money_metric else "")
    offset = q.fixed_offset()
    if offset is not None:  # whole divisions of epoch seconds: integers, not zone lookups
        size = 86_400 if bucket == "day" else 3_600
        moment = f"(sec + {offset}) // {size}"
    else:
        moment = f"date_trunc('{bucket}', timezone({quote(q.tz_name)}, ts))"
    rows = run(f"SELECT {name_sql(by)} AS name, {currency} AS cur, {moment} AS b, "
               f"sum({value}) AS v FROM {source(by, relation(q), where)} GROUP BY ALL")
    if offset is not None:
        epoch = dt.datetime(1970, 1, 1)
        step = dt.timedelta(days=1) if bucket == "day" else dt.timedelta(hours=1)
        rows = [(n, c, epoch + step * int(b), v) for n, c, b, v in rows]
    totals: dict[tuple[str, str], Any] = {}
    for name, cur, _, v in rows:
        totals[(name, cur)] = totals.get((name, cur), 0) + v
    ranked: dict[str, list[str]] = {}
    for name, cur in sorted(totals, key=lambda k: (k[1], -totals[k], k[0])):
        ranked.setdefault(cur, []).append(name)
    shown = {(n, cur) for cur, names in ranked.items() for n in names[:TOP_N]}
    buckets = _buckets(q, bucket)
    index = {b: i for i, b in enumerate(buckets)}
    found: dict[tuple[str, str], list[Any]] = {}
    for name, cur, b, v in rows:
        key = (name, cur) if (name, cur) in shown else (OTHER, cur)
        values = found.setdefault(key, [Decimal(0) if money_metric else 0] * len(buckets))
        at = index.get(b)
        if at is not None:
            values[at] += v
    order = {(n, cur): i for cur, names in ranked.items() for i, n in enumerate(names[:TOP_N])}
    out = []
    for (name, cur), values in sorted(found.items(),
                                      key=lambda kv: (kv[0][1], order.get(kv[0], TOP_N))):
        out.append({"name": name, "currency": (cur or UNPRICED) if money_metric else None,
                    "values": [amount_text(v) for v in values] if money_metric
                    else [int(v) for v in values]})
    return {"metric": metric, "by": by, "bucket": bucket,
            "buckets": [b.replace(tzinfo=q.tz).isoformat() for b in buckets],
            "series": out, "notices": q.notices}


def _buckets(q: Query, bucket: str) -> list[dt.datetime]:
    """Every bucket of the range, as local naive times (as DuckDB's ``timezone()`` gives)."""
    out: list[dt.datetime] = []
    if bucket == "day":
        day = q.since.astimezone(q.tz).date()
        while True:
            start = dt.datetime(day.year, day.month, day.day, tzinfo=q.tz)
            if start >= q.until:
                break
            out.append(start.replace(tzinfo=None))
            day += dt.timedelta(days=1)
        return out
    moment = q.since.astimezone(dt.timezone.utc).replace(minute=0, second=0, microsecond=0)
    while moment < q.until:
        local = moment.astimezone(q.tz).replace(minute=0, second=0, microsecond=0,
                                                tzinfo=None)
        if not out or out[-1] != local:
            out.append(local)
        moment += dt.timedelta(hours=1)
    return out


def top(run: Run, q: Query, params: Params) -> dict[str, Any]:
    by = _by(params, none=False)
    n = whole(params, "n", 20, 1, 1000)
    rel = source(by, relation(q), q.where())
    name = name_sql(by)
    counts: dict[str, list[int]] = {}
    costs: dict[str, list[tuple[Any, Any]]] = {}
    for key, cur, *sums, amount in run(
            f"SELECT {name} AS name, currency, sum(calls), sum(prompt_tokens), "
            f"sum(completion_tokens), sum(cached_tokens), sum(reasoning_tokens), sum({q.cost}) "
            f"FROM {rel} GROUP BY 1, 2"):
        row = counts.setdefault(key, [0, 0, 0, 0, 0])
        for i, v in enumerate(sums):
            row[i] += int(v)
        if amount is not None:
            costs.setdefault(key, []).append((cur, amount))
    totals: dict[str, Decimal] = {}
    for items in costs.values():
        for cur, amount in items:
            totals[cur or UNPRICED] = totals.get(cur or UNPRICED, Decimal(0)) + amount
    main = max(totals, key=lambda c: totals[c]) if totals else None
    rows: list[dict[str, Any]] = []
    for key, (calls, prompt, completion, cached, reasoning) in counts.items():
        spent = money(costs.get(key, []))
        rows.append({"name": key, "calls": int(calls), "input_tokens": int(prompt),
                     "output_tokens": int(completion), "cached_tokens": int(cached),
                     "reasoning_tokens": int(reasoning), "cost": spent})
    # by spend in the main currency (never a sum across currencies), then by calls
    rows.sort(key=lambda r: (-Decimal(r["cost"].get(main, "0")) if main else Decimal(0),
                             -r["calls"], r["name"]))
    return {"by": by, "n": n, "total_rows": len(rows), "rows": rows[:n],
            "notices": q.notices}


def _call_where(q: Query, params: Params) -> str:
    low_text, high_text = one(params, "bucket_start"), one(params, "bucket_end")
    low = instant(low_text, q.tz, "bucket_start") if low_text else None
    high = instant(high_text, q.tz, "bucket_end") if high_text else None
    where = q.where(since=low, until=high)
    kind = one(params, "problem")
    if kind:
        where += f" AND ({PROBLEMS[choice(params, 'problem', tuple(PROBLEMS), kind)]})"
    return where


def call_rows(rows: Sequence[tuple[Any, ...]], q: Query) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        record = dict(zip(CALL_FIELDS, row, strict=True))
        record["time"] = iso(record["time"], q)
        record["tags"] = list(record["tags"] or [])
        if record["cost"] is not None:
            record["cost"] = amount_text(record["cost"])
        for dim in ("key", "user", "region", "status", "endpoint"):
            if record[dim] == "-":
                record[dim] = None
        out.append(record)
    return out


def calls(run: Run, q: Query, params: Params, *, limit_max: int = 1000) -> dict[str, Any]:
    limit = whole(params, "limit", 100, 1, limit_max)
    offset = whole(params, "offset", 0, 0, 10**12)
    order = choice(params, "order", ("time", "cost"), "time")
    where = _call_where(q, params)
    total = run(f"SELECT count(*) FROM records WHERE {where}")[0][0]
    sort = "ts DESC, rid DESC" if order == "time" else "cost DESC NULLS LAST, ts DESC, rid DESC"
    rows = run(f"SELECT {CALL_COLUMNS} FROM records WHERE {where} ORDER BY {sort} "
               f"LIMIT {limit} OFFSET {offset}")
    return {"total": int(total), "offset": offset, "limit": limit,
            "rows": call_rows(rows, q), "notices": q.notices}


def to_csv(run: Run, q: Query, params: Params) -> str:
    """``table=top|calls|series`` of the same parameters as CSV (money: one column per
    currency, ``cost_CNY``)."""
    table = choice(params, "table", ("top", "calls", "series"), "top")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    if table == "calls":
        answer = calls(run, q, {**params, "limit": [one(params, "limit") or "1000000"]},
                       limit_max=1_000_000)
        writer.writerow(CALL_FIELDS)
        for row in answer["rows"]:
            writer.writerow(["" if row[f] is None else json.dumps(row[f], ensure_ascii=False)
                             if f == "tags" else row[f] for f in CALL_FIELDS])
    elif table == "top":
        answer = top(run, q, {**params, "n": [one(params, "n") or "1000"]})
        currencies = sorted({c for r in answer["rows"] for c in r["cost"]})
        writer.writerow([answer["by"], "calls", "input_tokens", "output_tokens",
                         "cached_tokens", "reasoning_tokens",
                         *(f"cost_{c}" for c in currencies)])
        for r in answer["rows"]:
            writer.writerow([r["name"], r["calls"], r["input_tokens"], r["output_tokens"],
                             r["cached_tokens"], r["reasoning_tokens"],
                             *(r["cost"].get(c, "") for c in currencies)])
    else:
        answer = series(run, q, params)
        writer.writerow(["bucket", answer["by"], "currency", answer["metric"]])
        for s in answer["series"]:
            for b, v in zip(answer["buckets"], s["values"], strict=True):
                writer.writerow([b, s["name"], s["currency"] or "", v])
    return out.getvalue()
