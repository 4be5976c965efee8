"""Re-pricing: what logged usage would have cost on another model, region, or as batch calls.

Vectorised per target offer: each row's request-size tier is found by a binary search on its
prompt tokens, and costs are summed as exact integers of 1e-12 currency units (every catalogue
price, and its 20 % / 10 % cache fractions, is a whole number of those per token), so the
totals are exact decimals again.
"""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pyarrow as pa

from ..base.errors import QwenMeterError
from ..catalogue.core import Catalogue, default_catalogue
from ..catalogue.records import ModelSpec, Offer

MONEY = pa.decimal128(38, 18)

PICO = Decimal(10) ** 12
_PER_TOKEN = Decimal(10) ** 6  # price per 1M tokens → pico units per token


def _pico(price: Decimal | None) -> int | None:
    if price is None:
        return None
    value = price * _PER_TOKEN
    if value != value.to_integral_value():
        raise QwenMeterError(f"price {price} is finer than 1e-12 per token")
    return int(value)


def _rates(offer: Offer) -> dict[str, np.ndarray]:
    """Per-tier integer prices (pico units per token); -1 where the tier has no price."""
    cache = offer.cache
    out: dict[str, list[int]] = {"input": [], "output": [], "thinking": [], "hit": []}
    for tier in offer.tiers:
        hit = tier.cache_hit if tier.cache_hit is not None else (
            None if tier.input is None else tier.input * cache.implicit_hit)
        for key, price in (("input", tier.input), ("output", tier.output),
                           ("thinking", tier.output_thinking), ("hit", hit)):
            value = _pico(price)
            out[key].append(-1 if value is None else value)
    return {k: np.array(v, dtype=np.int64) for k, v in out.items()}


def reprice_costs(table: pa.Table, spec: ModelSpec, offer: Offer, *, batch: bool = False
                  ) -> pa.Array:
    """Each row's cost on ``spec`` in ``offer``'s region (null where a price is missing)."""
    if not offer.tiers:
        return pa.nulls(table.num_rows, MONEY)
    prompt = table["prompt_tokens"].fill_null(0).to_numpy().astype(np.int64)
    completion = table["completion_tokens"].fill_null(0).to_numpy().astype(np.int64)
    cached = table["cached_tokens"].fill_null(0).to_numpy().astype(np.int64)
    reasoning = table["reasoning_tokens"].fill_null(0).to_numpy().astype(np.int64)
    uppers = np.array([t.upto if t.upto is not None else np.iinfo(np.int64).max
                       for t in offer.tiers], dtype=np.int64)
    tier = np.minimum(np.searchsorted(uppers, np.maximum(prompt, 1), side="left"),
                      len(offer.tiers) - 1)
    rates = _rates(offer)
    thinking = (reasoning > 0) | (spec.thinking == "only")
    input_rate = rates["input"][tier]
    hit_rate = input_rate if batch else rates["hit"][tier]
    output_rate = np.where(thinking, rates["thinking"][tier], rates["output"][tier])
    missing = (input_rate < 0) | ((hit_rate < 0) & (cached > 0)) | \
        ((output_rate < 0) & (completion > 0))
    # Python ints would be exact whatever the size; int64 is exact below ~9.2e18 pico units
    # per row (over 9 million currency units), far above any single call.
    pico = (prompt - cached) * input_rate + cached * np.maximum(hit_rate, 0) \
        + completion * np.maximum(output_rate, 0)
    if batch and offer.batch is None:
        return pa.nulls(table.num_rows, MONEY)
    scale = (offer.batch if batch and offer.batch is not None else Decimal(1)) / PICO
    values = [None if bad else Decimal(int(p)) * scale for p, bad in zip(pico, missing,
                                                                          strict=True)]
    return pa.array(values, type=MONEY)


def reprice(table: pa.Table, *, model: str | None = None, region: str | None = None,
            batch: bool = False, catalogue: Catalogue | None = None) -> pa.Table:
    """``table`` with ``cost`` and ``currency`` replaced by their re-priced values.

    ``model=None`` keeps each row's own model; ``region=None`` keeps each row's region.
    Rows whose model is unknown or not offered there get a null cost.
    """
    catalogue = catalogue or default_catalogue()
    models = [model] * table.num_rows if model else table["model"].to_pylist()
    regions = [region] * table.num_rows if region else \
        [r or "cn" for r in table["region"].to_pylist()]
    costs: list[object] = [None] * table.num_rows
    currencies: list[object] = [None] * table.num_rows
    groups: dict[tuple[str, str], list[int]] = {}
    for index, key in enumerate(zip(models, regions, strict=True)):
        groups.setdefault(key, []).append(index)
    for (name, where), rows in groups.items():
        try:
            spec = catalogue.resolve(name)
            offer = spec.offer(where)
        except QwenMeterError:
            continue
        subset = table.take(pa.array(rows))
        priced = reprice_costs(subset, spec, offer, batch=batch).to_pylist()
        for row, value in zip(rows, priced, strict=True):
            costs[row] = value
            currencies[row] = offer.currency
    table = table.set_column(table.schema.get_field_index("cost"), "cost",
                             pa.array(costs, type=MONEY))
    table = table.set_column(table.schema.get_field_index("currency"), "currency",
                             pa.array(currencies, type=pa.string()))
    if model:
        table = table.set_column(table.schema.get_field_index("model"), "model",
                                 pa.array([model] * table.num_rows, type=pa.string()))
    return table


# --- price tables for the SQL engine -------------------------------------------------------

#: Columns of the ``prices`` / ``target_prices`` tables the report SQL joins.
PRICE_COLUMNS = ("key", "region", "bucket", "currency", "input", "output", "thinking", "hit",
                 "thinking_only")
_FEMTO_PER_TOKEN = Decimal(10) ** 9  # price per 1M tokens → femto-units (1e-15) per token


def _femto(price: Decimal | None, factor: Decimal = Decimal(1)) -> int | None:
    if price is None:
        return None
    value = price * factor * _FEMTO_PER_TOKEN
    if value != value.to_integral_value():
        raise QwenMeterError(f"price {price} (x{factor}) is finer than 1e-15 per token")
    return int(value)


def thresholds(catalogue: Catalogue) -> list[int]:
    """Every request-size tier boundary in ``catalogue``: records between two neighbours are
    in the same tier of every offer, so they are priced together."""
    found: set[int] = set()
    for spec in catalogue:
        for offers in spec.offers.values():
            for offer in offers:
                for tier in offer.tiers:
                    found.update(v for v in (tier.above, tier.upto) if v)
    return sorted(found)


def price_rows(spec: ModelSpec, key: int, bounds: list[int], *, batch: bool = False
               ) -> list[tuple[object, ...]]:
    """``spec``'s current prices in every region, one row (of :data:`PRICE_COLUMNS`) per
    request-size bucket of ``bounds`` (see :func:`..sql.bucket_sql`), in femto-units per token.

    ``batch`` gives batch prices (the batch factor applied, cache hits at the input price);
    an offer without batch prices has no rows then.
    """
    rows: list[tuple[object, ...]] = []
    sizes = [*bounds, (bounds[-1] + 1) if bounds else 1]  # a request size in each bucket
    for region in spec.regions:
        offer = spec.offer(region)
        if batch and offer.batch is None:
            continue
        factor = offer.batch if batch and offer.batch is not None else Decimal(1)
        for bucket, size in enumerate(sizes):
            tier = offer.tier_for(size)
            if tier is None:
                continue
            hit = tier.input if batch else (
                tier.cache_hit if tier.cache_hit is not None else
                None if tier.input is None else tier.input * offer.cache.implicit_hit)
            rows.append((key, region, bucket, offer.currency, _femto(tier.input, factor),
                         _femto(tier.output, factor), _femto(tier.output_thinking, factor),
                         _femto(hit, factor), spec.thinking == "only"))
    return rows
