"""Reports: a summary, totals and breakdowns of usage, re-pricing, cache savings, top tags and a
budget burn-down — every table computed by the SQL of :mod:`.sql` in one streaming pass
(:mod:`.engine`); the tables are small pandas DataFrames.

Costs are summed per currency, always: every table has one row per (group, currency), and no
total ever mixes CNY and USD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from ..base.errors import ConfigurationError
from ..catalogue.core import Catalogue
from . import sql
from .duck import check_zone, import_behind
from .engine import run
from .plan import Plan, Scan, Skipped
from .read import UsageData

GROUPINGS = ("model", "day", "week", "month", "tag", "user", "region", "status",
             "served_model", "endpoint")
TOKEN_KINDS = sql.REPORT_TOKENS
_ORDER = ("calls", *TOKEN_KINDS, "thinking_share", "cost", "cache_saved", "unpriced_calls",
          "estimated_calls", "failed_calls", "prompt_estimate_error")


@dataclass
class Summary:
    """What a reader wants first: spend per currency, the dates covered, calls, top models."""

    spend: dict[str, Decimal]
    cache_saved: dict[str, Decimal]
    calls: int
    first: Any
    last: Any
    tz: str
    top_models: dict[str, list[tuple[str, Decimal, int]]]
    unpriced_calls: int = 0


@dataclass
class Report:
    """The tables of one report; render them with :mod:`qwen_meter.report.render`."""

    by: tuple[str, ...]
    breakdown: Any
    totals: Any
    daily: Any
    tokens_by_kind: dict[str, int]
    top_tags: Any
    top_tags_by_calls: Any = None
    tags_count: int = 0
    summary: Summary | None = None
    repricing: Any = None
    reprice_label: str | None = None
    burn_down: Any = None
    skipped: list[Skipped] = field(default_factory=list)
    skipped_count: int = 0
    unpriced: list[Skipped] = field(default_factory=list)
    unpriced_count: int = 0
    records: int = 0
    tz: str = "UTC"
    top: int = 10
    #: The usage the report was built from (the HTML report reads it again as the dashboard).
    usage: UsageData | None = None


def _frame(scan: Scan, keys: Sequence[str], *, repriced: bool = False) -> Any:
    """The cube grouped by ``keys``, as a DataFrame with exact Decimal money."""
    frame = scan.query(sql.sections_sql("priced", keys, repriced=repriced)).to_pandas()
    scale = Decimal(1) / sql.FEMTO
    frame["cache_saved"] = [None if v is None else v * scale for v in frame.pop("saved_femto")]
    if repriced:
        frame["cost_repriced"] = [None if v is None else v * scale
                                  for v in frame.pop("repriced_femto")]
    completion = frame["completion_tokens"].where(frame["completion_tokens"] > 0)
    frame["thinking_share"] = (frame["reasoning_tokens"] / completion).fillna(0.0)
    return frame


def _table(frame: Any, keys: Sequence[str]) -> Any:
    columns = [*keys, *(c for c in _ORDER if c in frame.columns)]
    return frame[columns].reset_index(drop=True)


def _top_tags(tags: Any, top: int) -> tuple[Any, Any]:
    """The ``top`` tags by cost in each currency, and by calls (all currencies)."""
    import pandas as pd

    priced = tags[tags["cost"].notna()]
    by_cost = [group.assign(_c=[float(c) for c in group["cost"]])
               .sort_values(["_c", "calls"], ascending=False).head(top).drop(columns="_c")
               for _, group in priced.groupby("currency", sort=True)]
    cost = pd.concat(by_cost) if by_cost else tags.head(0)
    calls = tags.groupby("tag", as_index=False)["calls"].sum() \
        .sort_values(["calls", "tag"], ascending=[False, True]).head(top)
    return cost.reset_index(drop=True), calls.reset_index(drop=True)


def _summary(scan: Scan, totals: Any, daily: Any, tz: str) -> Summary:
    first = scan.query("SELECT min(first) AS f, max(last) AS l FROM cube").to_pylist()[0]
    import zoneinfo

    try:
        zone: Any = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        zone = None

    def local(value: Any) -> Any:
        return value.astimezone(zone) if value is not None and zone is not None else value

    priced = totals[totals["currency"] != "-"]
    models: dict[str, list[tuple[str, Decimal, int]]] = {}
    by_model = daily.groupby(["currency", "model"], as_index=False).agg(
        cost=("cost", lambda s: sum((v for v in s if v is not None), Decimal(0))),
        calls=("calls", "sum"))
    for currency, group in by_model.groupby("currency"):
        if currency == "-":
            continue
        ranked = sorted(zip(group["model"], group["cost"], group["calls"], strict=True),
                        key=lambda r: (-r[1], -r[2], r[0]))
        models[str(currency)] = [(str(m), c, int(n)) for m, c, n in ranked[:3]]
    return Summary(
        spend={str(r.currency): r.cost for r in priced.itertuples() if r.cost is not None},
        cache_saved={str(r.currency): r.cache_saved for r in priced.itertuples()
                     if r.cache_saved is not None},
        calls=int(totals["calls"].sum()), first=local(first["f"]), last=local(first["l"]),
        tz=tz, top_models=models, unpriced_calls=scan.unpriced_count)


def _budget(budget: Any) -> tuple[Decimal, str]:
    """``(amount, currency)`` or ``"50 CNY"`` (``"50 RMB"``, ``"¥50"``...) → (amount, CNY|USD);
    a currency the logs cannot hold would draw an empty burn-down, so it is refused."""
    from ..catalogue.records import CURRENCIES
    from ..limits.budget.money import parse_money

    amount, currency = parse_money(*budget) if isinstance(budget, tuple) else \
        parse_money(budget)
    if currency not in CURRENCIES:
        raise ConfigurationError(f"a budget needs a currency ({', '.join(CURRENCIES)}; "
                                 f"RMB, 元, ¥ and $ are read too), e.g. '50 CNY'; got {budget!r}")
    if amount < 0:
        raise ConfigurationError(f"a budget cannot be negative: {budget!r}")
    return amount, currency


def _burn_down(daily: Any, limit: Decimal, currency: str) -> Any:
    frame = daily[daily["currency"] == currency].groupby("day", as_index=False).agg(
        spent=("cost", lambda s: sum((v for v in s if v is not None), Decimal(0))))
    frame = frame.sort_values("day").reset_index(drop=True)
    running = Decimal(0)
    cumulative, remaining, share = [], [], []
    for value in frame["spent"]:
        running += value
        cumulative.append(running)
        remaining.append(limit - running)
        share.append(float(running / limit) if limit else 0.0)
    frame["cumulative"] = cumulative
    frame["remaining"] = remaining
    frame["used_share"] = share
    frame.attrs.update(limit=limit, currency=currency)
    return frame


def _repricing(scan: Scan, by: Sequence[str]) -> Any:
    keys = [*by, "currency", "repriced_currency"]
    frame = _frame(scan, keys, repriced=True)
    frame["repriced_currency"] = frame["repriced_currency"].fillna("-")
    same = frame["currency"] == frame["repriced_currency"]
    frame["difference"] = [
        (b - a) if ok and a is not None and b is not None else None
        for a, b, ok in zip(frame["cost"], frame["cost_repriced"], same, strict=True)]
    return frame[[*keys, "calls", "cost", "cost_repriced", "difference",
                  "repriced_unpriced_calls"]].reset_index(drop=True)


def build_report(data: UsageData, by: Sequence[str] = ("model",), *,
                 reprice_as: str | None = None, reprice_region: str | None = None,
                 reprice_batch: bool = False,
                 budget: tuple[Decimal | str | int, str] | str | None = None,
                 top: int = 10, tz: str | None = None,
                 catalogue: Catalogue | None = None) -> Report:
    """A report of ``data`` grouped ``by`` some of :data:`GROUPINGS`.

    ``reprice_as`` / ``reprice_region`` / ``reprice_batch`` add a comparison with what the same
    usage would have cost on that model, in that region, or as batch calls (per original and
    re-priced currency); ``budget`` (amount, currency) or ``"50 CNY"`` adds a burn-down
    table; ``top`` is how many tags are listed (the rest are counted); ``tz`` (default:
    ``data``'s) is the zone whose calendar days, weeks and months the report uses.
    """
    by = tuple(by)
    unknown = [k for k in by if k not in GROUPINGS]
    if unknown or not by:
        raise ConfigurationError(f"cannot group by {', '.join(unknown) or 'nothing'}; choose "
                                 f"from {', '.join(GROUPINGS)}")
    if len(set(by)) != len(by):
        raise ConfigurationError(f"--by names a key twice: {', '.join(by)}")
    if reprice_region is not None:
        from ..catalogue.core import default_catalogue

        regions = tuple((catalogue or data.catalogue or default_catalogue()).regions)
        if reprice_region not in regions:
            raise ConfigurationError(f"unknown region {reprice_region!r}; choose from "
                                     f"{', '.join(regions)}")
    budget = None if budget is None else _budget(budget)
    zone = check_zone(tz or data.tz)
    plan = Plan(by=by, tz=zone, since=data.since, until=data.until, reprice_model=reprice_as,
                reprice_region=reprice_region, reprice_batch=reprice_batch)
    import_behind("pandas")  # the tables are DataFrames: load pandas while DuckDB reads
    scan = run(data.sources, plan, catalogue=catalogue or data.catalogue,
               default_model=data.default_model, region=data.region, progress=data.progress)
    try:
        totals = _frame(scan, ["currency"])
        breakdown = _table(_frame(scan, [*by, "currency"]), [*by, "currency"])
        daily = _frame(scan, ["day", "model", "currency"])
        tags = _frame(scan, ["tag", "currency"])
        tags = tags[tags["tag"] != "(none)"]
        top_cost, top_calls = _top_tags(tags, top)
        report = Report(
            by, breakdown, _table(totals, ["currency"]), _table(daily, ["day", "model",
                                                                        "currency"]),
            {k: int(totals[k].sum()) for k in TOKEN_KINDS},
            _table(top_cost, ["tag", "currency"]), top_calls, tags_count=int(
                tags["tag"].nunique()),
            summary=_summary(scan, totals, daily, zone), skipped=scan.skipped,
            skipped_count=scan.skipped_count, unpriced=scan.unpriced,
            unpriced_count=scan.unpriced_count, records=scan.records, tz=zone, top=top,
            usage=data)
        if plan.repricing:
            report.repricing = _repricing(scan, by)
            report.reprice_label = " ".join(filter(None, [
                reprice_as or "same models", f"in {reprice_region}" if reprice_region else "",
                "as batch" if reprice_batch else ""]))
        if budget is not None:
            report.burn_down = _burn_down(daily, Decimal(budget[0]), budget[1])
    finally:
        scan.db.close()
    return report
