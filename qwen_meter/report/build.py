"""Reports: totals and breakdowns of usage, re-pricing, cache savings, budget burn-down.

Aggregation runs in Arrow (exact decimal sums, multithreaded); the results are small pandas
DataFrames. Costs are summed per currency, always: no total ever mixes CNY and USD.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ..catalogue import Catalogue
from ..errors import ConfigurationError
from .prices import reprice, saved_by_cache
from .read import MONEY, Skipped, UsageData

GROUPINGS = ("model", "day", "week", "month", "tag", "user", "region", "status",
             "served_model", "endpoint")
TOKEN_KINDS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
_DATE_FORMATS = ("day", "week", "month")
_CARRIED = {"id", "currency", "cost", "cache_saved", "unpriced_call", "estimated_call",
            "error_call", "estimate_error", "tags", "model", "user", "region", "status",
            "served_model", "endpoint", *TOKEN_KINDS}


@dataclass
class Report:
    """The tables of one report; render them with :mod:`qwen_meter.report.render`."""

    by: tuple[str, ...]
    breakdown: Any
    totals: Any
    daily: Any
    tokens_by_kind: Any
    top_tags: Any
    repricing: Any = None
    reprice_label: str | None = None
    burn_down: Any = None
    skipped: list[Skipped] = field(default_factory=list)
    unpriced: list[Skipped] = field(default_factory=list)
    records: int = 0


def _date_key(table: pa.Table, key: str) -> pa.Array:
    """day / month are prefixes of the ISO time; a week needs the calendar."""
    if key == "week":
        parsed = pc.strptime(pc.utf8_slice_codeunits(table["time"], 0, 19),
                             format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
        text = pc.strftime(parsed, format="%G-W%V", locale="C")
    else:
        text = pc.utf8_slice_codeunits(table["time"], 0, 10 if key == "day" else 7)
    return pc.fill_null(text, "unknown")


def _with_keys(table: pa.Table, by: Sequence[str]) -> pa.Table:
    """Adds the grouping columns (day / week / month from time; one row per tag)."""
    for key in by:
        if key in _DATE_FORMATS and key not in table.column_names:
            table = table.append_column(key, _date_key(table, key))
    if "tag" in by:
        # One row per tag (untagged records as "(none)"), carrying only what is aggregated.
        table = table.select([c for c in table.column_names if c in _CARRIED or c in by])
        tags = table["tags"]
        untagged = pc.indices_nonzero(pc.equal(pc.fill_null(pc.list_value_length(tags), 0), 0))
        tagged = table.take(pc.list_parent_indices(tags)).append_column(
            "tag", pc.list_flatten(tags))
        rest = table.take(untagged).append_column(
            "tag", pa.array(["(none)"] * len(untagged), type=pa.string()))
        table = pa.concat_tables([tagged, rest])
    for key in ("model", "user", "region", "status", "served_model", "endpoint"):
        if key in by:
            index = table.schema.get_field_index(key)
            table = table.set_column(index, key, pc.fill_null(table[key], "-"))
    index = table.schema.get_field_index("currency")
    return table.set_column(index, "currency", pc.fill_null(table["currency"], "-"))


def _flags(table: pa.Table) -> pa.Table:
    status = pc.fill_null(table["status"], "ok")
    unpriced = pc.and_(pc.is_null(table["cost"]), pc.not_equal(status, "error"))
    estimated = table["estimated_prompt_tokens"]
    error = pc.if_else(pc.and_(pc.is_valid(estimated), pc.greater(table["prompt_tokens"], 0)),
                       pc.divide(pc.abs(pc.cast(pc.subtract(estimated, table["prompt_tokens"]),
                                                pa.float64())),
                                 pc.cast(table["prompt_tokens"], pa.float64())),
                       pa.scalar(None, pa.float64()))
    return (table.append_column("unpriced_call", pc.cast(unpriced, pa.int64()))
            .append_column("estimated_call", pc.cast(pc.fill_null(table["usage_estimated"],
                                                                  False), pa.int64()))
            .append_column("error_call", pc.cast(pc.equal(status, "error"), pa.int64()))
            .append_column("estimate_error", error))


def _aggregate(table: pa.Table, keys: Sequence[str]) -> Any:
    aggregations = [("id", "count"), *((k, "sum") for k in TOKEN_KINDS), ("cost", "sum"),
                    ("unpriced_call", "sum"), ("estimated_call", "sum"), ("error_call", "sum"),
                    ("estimate_error", "mean")]
    if "cache_saved" in table.column_names:
        aggregations.append(("cache_saved", "sum"))
    grouped = table.group_by(list(keys), use_threads=True).aggregate(aggregations)
    frame = grouped.to_pandas()
    frame = frame.rename(columns={"id_count": "calls", "cost_sum": "cost",
                                  "unpriced_call_sum": "unpriced_calls",
                                  "estimated_call_sum": "estimated_calls",
                                  "error_call_sum": "failed_calls",
                                  "estimate_error_mean": "prompt_estimate_error",
                                  "cache_saved_sum": "cache_saved",
                                  **{f"{k}_sum": k for k in TOKEN_KINDS}})
    completion = frame["completion_tokens"].where(frame["completion_tokens"] > 0)
    frame["thinking_share"] = (frame["reasoning_tokens"] / completion).fillna(0.0)
    order = [*keys, "calls", *TOKEN_KINDS, "thinking_share", "cost", "cache_saved",
             "unpriced_calls", "estimated_calls", "failed_calls", "prompt_estimate_error"]
    frame = frame[[c for c in order if c in frame.columns]]
    return frame.sort_values(list(keys), kind="stable").reset_index(drop=True)


def _cache_savings(table: pa.Table, catalogue: Catalogue | None) -> pa.Table:
    """A ``cache_saved`` column: computed for the rows that had cache hits only."""
    hits = pc.greater(pc.fill_null(table["cached_tokens"], 0), 0)
    if not pc.any(hits).as_py():
        return table.append_column("cache_saved", pa.nulls(table.num_rows, MONEY))
    indices = pc.indices_nonzero(hits)
    saved = saved_by_cache(table.take(indices), catalogue).to_pylist()
    values: list[Decimal | None] = [None] * table.num_rows
    for index, value in zip(indices.to_pylist(), saved, strict=True):
        values[index] = value
    return table.append_column("cache_saved", pa.array(values, type=MONEY))


def _burn_down(table: pa.Table, limit: Decimal, currency: str) -> Any:
    daily = _with_keys(table, ["day"])
    daily = daily.filter(pc.equal(daily["currency"], currency))
    frame = daily.group_by(["day"]).aggregate([("cost", "sum")]).to_pandas()
    frame = frame.rename(columns={"cost_sum": "spent"}).sort_values("day").reset_index(drop=True)
    frame["spent"] = frame["spent"].apply(lambda v: v if v is not None else Decimal(0))
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


def build_report(data: UsageData, by: Sequence[str] = ("model",), *,
                 reprice_as: str | None = None, reprice_region: str | None = None,
                 reprice_batch: bool = False, budget: tuple[Decimal, str] | None = None,
                 top: int = 10, catalogue: Catalogue | None = None) -> Report:
    """A report of ``data`` grouped ``by`` some of :data:`GROUPINGS`.

    ``reprice_as`` / ``reprice_region`` / ``reprice_batch`` add a comparison with what the same
    usage would have cost on that model, in that region, or as batch calls; ``budget``
    (amount, currency) adds a burn-down table.
    """
    unknown = [k for k in by if k not in GROUPINGS]
    if unknown:
        raise ConfigurationError(f"cannot group by {', '.join(unknown)}; choose from "
                                 f"{', '.join(GROUPINGS)}")
    table = _cache_savings(_flags(data.table), catalogue)
    table = table.append_column("day", _date_key(table, "day"))  # used by several sections
    keys = [*by, "currency"]
    breakdown = _aggregate(_with_keys(table, by), keys)
    totals = _aggregate(_with_keys(table, []), ["currency"])
    daily = _aggregate(_with_keys(table, ["day", "model"]), ["day", "model", "currency"])
    kinds = {k: int(pc.sum(table[k]).as_py() or 0) for k in TOKEN_KINDS}
    tags = _aggregate(_with_keys(table, ["tag"]), ["tag", "currency"])
    tags = tags[tags["tag"] != "(none)"].sort_values("calls", ascending=False).head(top)
    report = Report(tuple(by), breakdown, totals, daily, kinds, tags.reset_index(drop=True),
                    skipped=list(data.skipped), unpriced=list(data.unpriced),
                    records=data.table.num_rows)
    if reprice_as or reprice_region or reprice_batch:
        report.repricing, report.reprice_label = _repricing(
            data.table, by, reprice_as, reprice_region, reprice_batch, catalogue)
    if budget is not None:
        report.burn_down = _burn_down(table, Decimal(budget[0]), budget[1])
    return report


def _repricing(table: pa.Table, by: Sequence[str], model: str | None, region: str | None,
               batch: bool, catalogue: Catalogue | None) -> tuple[Any, str]:
    target = reprice(table, model=model, region=region, batch=batch, catalogue=catalogue)
    target = target.set_column(target.schema.get_field_index("model"), "model", table["model"])
    label = " ".join(filter(None, [model or "same models", f"in {region}" if region else "",
                                   "as batch" if batch else ""]))
    actual = _aggregate(_with_keys(_flags(table), by), [*by, "currency"])
    other = _aggregate(_with_keys(_flags(target), by), [*by, "currency"])
    merged = actual[[*by, "currency", "calls", "cost"]].merge(
        other[[*by, "currency", "cost", "unpriced_calls"]], on=list(by), how="outer",
        suffixes=("", "_repriced"))
    merged = merged.rename(columns={"currency_repriced": "repriced_currency",
                                    "unpriced_calls": "repriced_unpriced_calls"})
    same = merged["currency"] == merged["repriced_currency"]
    merged["difference"] = [
        (b - a) if ok and a is not None and b is not None else None
        for a, b, ok in zip(merged["cost"], merged["cost_repriced"], same, strict=True)]
    return merged, label
