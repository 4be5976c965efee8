"""Parsing one model's ``regions`` table into :class:`Offer` chains.

Per region: the token limits, the price (flat or request-size tiers, contiguous from 0), the
batch factors, rate limits, tool fees and free quota, the source and dates, and the
``history`` of earlier offers (newest first). A region that publishes no list of its own but
takes another's (``prices_from``) gets that list under its own name.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from decimal import Decimal
from types import MappingProxyType
from typing import Any

from .parse_fields import _count, _Ctx, _date, _known_keys, _mapping, _money, _source
from .records import (
    CURRENCIES,
    PRICE_FIELDS,
    FreeQuota,
    Limits,
    Offer,
    PriceTier,
    RateLimits,
    Source,
    ToolFee,
)

_LIMIT_FIELDS = tuple(f.name for f in fields(Limits))


def _limits(raw: Any, ctx: _Ctx, where: str) -> Limits:
    if raw is None:
        return Limits()
    raw = _mapping(raw, ctx, where)
    _known_keys(raw, _LIMIT_FIELDS, ctx, where)
    values = {k: _count(v, ctx, f"{where}.{k}", allow_zero=k.startswith("max_output"))
              for k, v in raw.items()}
    limits = Limits(**values)
    for name, context in (("max_input", limits.context),
                          ("max_input_thinking", limits.context_limit(True))):
        value = getattr(limits, name)
        if value is not None and context is not None and value > context:
            raise ctx.error(f"{name} ({value}) is above the context window ({context})",
                            f"{where}.{name}")
    return limits


def _tier(raw: Any, ctx: _Ctx, where: str) -> PriceTier:
    raw = _mapping(raw, ctx, where)
    _known_keys(raw, ("above", "upto", *PRICE_FIELDS), ctx, where)
    above = _count(raw.get("above", 0), ctx, f"{where}.above", allow_zero=True)
    upto = raw.get("upto")
    if upto is not None:
        upto = _count(upto, ctx, f"{where}.upto")
        if upto <= above:
            raise ctx.error("upto must be above 'above'", f"{where}.upto")
    prices = {k: _money(raw[k], ctx, f"{where}.{k}") for k in PRICE_FIELDS if k in raw}
    return PriceTier(above=above, upto=upto, **prices)


def _tiers(raw: Mapping[str, Any], ctx: _Ctx, where: str) -> tuple[PriceTier, ...]:
    if "price" in raw and "tiers" in raw:
        raise ctx.error("give either price or tiers", f"{where}.price")
    if "price" in raw:
        flat = _mapping(raw["price"], ctx, f"{where}.price")
        if "above" in flat or "upto" in flat:
            raise ctx.error("a flat price has no bounds; use tiers", f"{where}.price")
        return (_tier(flat, ctx, f"{where}.price"),)
    if "tiers" not in raw:
        return ()
    items = raw["tiers"]
    if not isinstance(items, list) or not items:
        raise ctx.error("expected a non-empty list of tiers", f"{where}.tiers")
    tiers = tuple(_tier(t, ctx, f"{where}.tiers[{i}]") for i, t in enumerate(items))
    if tiers[0].above != 0:
        raise ctx.error("the first tier must start at 0", f"{where}.tiers[0].above")
    for i in range(1, len(tiers)):
        previous, current = tiers[i - 1], tiers[i]
        if previous.upto is None or current.above != previous.upto:
            kind = "gap" if previous.upto is not None and current.above > previous.upto \
                else "overlap"
            raise ctx.error(f"tiers have a {kind} between {previous.upto} and {current.above}",
                            f"{where}.tiers[{i}].above")
    return tiers


_OFFER_KEYS = ("source", "as_of", "effective", "currency", "note", "limits", "price", "tiers",
               "batch", "batch_chat", "rate_limits", "free_quota", "tool_fees", "history")
_RATE_KEYS = ("rpm", "tpm", "rps", "tps", "source")


def _factor(raw: Mapping[str, Any], key: str, ctx: _Ctx, where: str) -> Decimal | None:
    if key not in raw:
        return None
    value = _money(raw[key], ctx, f"{where}.{key}")
    if not 0 < value <= 1:
        raise ctx.error(f"{key} is a factor in (0, 1]", f"{where}.{key}")
    return value


def _rate_limits(raw: Mapping[str, Any], sources: Mapping[str, Source], ctx: _Ctx, where: str
                 ) -> RateLimits | None:
    if "rate_limits" not in raw:
        return None
    where = f"{where}.rate_limits"
    rl = _mapping(raw["rate_limits"], ctx, where)
    _known_keys(rl, _RATE_KEYS, ctx, where)
    got = {k: _count(rl[k], ctx, f"{where}.{k}") for k in ("rpm", "tpm", "rps", "tps") if k in rl}
    # Both given (an override setting rpm over a published rps): both apply.
    return RateLimits(
        rpm=got.get("rpm", got["rps"] * 60 if "rps" in got else None),
        tpm=got.get("tpm", got["tps"] * 60 if "tps" in got else None),
        source=_source(rl.get("source", raw.get("source")), sources, ctx, f"{where}.source"),
        rps=got.get("rps"), tps=got.get("tps"))


def _tool_fees(raw: Mapping[str, Any], sources: Mapping[str, Source], ctx: _Ctx, where: str
               ) -> Mapping[str, ToolFee]:
    if "tool_fees" not in raw:
        return MappingProxyType({})
    where = f"{where}.tool_fees"
    out = {}
    for tool, entry in _mapping(raw["tool_fees"], ctx, where).items():
        entry = _mapping(entry, ctx, f"{where}.{tool}")
        _known_keys(entry, ("per_call", "per_1000_calls", "source", "note"), ctx,
                    f"{where}.{tool}")
        if ("per_call" in entry) == ("per_1000_calls" in entry):
            raise ctx.error("give per_call or per_1000_calls", f"{where}.{tool}.per_call")
        fee = _money(entry["per_call"], ctx, f"{where}.{tool}.per_call") if "per_call" in entry \
            else _money(entry["per_1000_calls"], ctx, f"{where}.{tool}.per_1000_calls") / 1000
        out[str(tool)] = ToolFee(fee, _source(entry.get("source", raw.get("source")), sources, ctx,
                                              f"{where}.{tool}.source"),
                                 str(entry.get("note", "")))
    return MappingProxyType(out)


def _offer(raw: Any, region: str, defaults: Mapping[str, Any], sources: Mapping[str, Source],
           ctx: _Ctx, where: str, inherited: Mapping[str, Any] | None = None) -> Offer:
    raw = _mapping(raw, ctx, where)
    _known_keys(raw, _OFFER_KEYS, ctx, where)
    source = _source(raw.get("source"), sources, ctx, f"{where}.source")
    currency = raw.get("currency", defaults["regions"][region]["currency"])
    if currency not in CURRENCIES:
        raise ctx.error(f"unknown currency {currency!r}; known: {', '.join(CURRENCIES)}",
                        f"{where}.currency")
    # A region bills in one currency (international accounts in USD): a figure copied from a
    # page that prints it in another currency would be billed as if it were this one (CNY
    # amounts summed into a USD budget, written as USD in a LiteLLM map). Convert it with a
    # rate of your own, or leave the price out so the call is unpriced with a reason.
    region_currency = defaults["regions"][region]["currency"]
    if currency != region_currency:
        raise ctx.error(f"region {region} bills in {region_currency}, so its prices must be "
                        f"{region_currency}, not {currency}; convert them at a rate you choose "
                        f"or leave the price out (the call is then unpriced)",
                        f"{where}.currency")
    tiers = _tiers(raw, ctx, where)
    limits = _limits(raw.get("limits"), ctx, f"{where}.limits")
    if tiers and tiers[-1].upto is not None and limits.max_input is not None \
            and tiers[-1].upto < limits.max_input:
        raise ctx.error(f"tiers end at {tiers[-1].upto}, below max_input {limits.max_input}",
                        f"{where}.tiers")
    batch = _factor(raw, "batch", ctx, where)
    batch_chat = _factor(raw, "batch_chat", ctx, where)
    rate_limits = _rate_limits(raw, sources, ctx, where)
    quota_raw = raw.get("free_quota", (inherited or {}).get("free_quota",
                                                            defaults["free_quota"].get(region)))
    free_quota = None
    if quota_raw is not None:
        quota = _mapping(quota_raw, ctx, f"{where}.free_quota")
        free_quota = FreeQuota(_count(quota.get("tokens"), ctx, f"{where}.free_quota.tokens"),
                               _count(quota.get("days"), ctx, f"{where}.free_quota.days"),
                               _source(quota.get("source"), sources, ctx,
                                       f"{where}.free_quota.source"))
    as_of = _date(raw["as_of"], ctx, f"{where}.as_of") if "as_of" in raw else source.as_of
    effective = _date(raw["effective"], ctx, f"{where}.effective") if "effective" in raw \
        else source.effective
    if effective is None:
        raise ctx.error(f"no effective date: give 'effective' here or on source {source.id!r}",
                        f"{where}.effective")
    note = raw.get("note", "")
    if not isinstance(note, str):
        raise ctx.error("expected text", f"{where}.note")
    return Offer(region=region, currency=currency, as_of=as_of, source=source, limits=limits,
                 tiers=tiers, batch=batch, cache=defaults["cache"], rate_limits=rate_limits,
                 free_quota=free_quota, note=note, effective=effective, batch_chat=batch_chat,
                 tool_fees=_tool_fees(raw, sources, ctx, where))


def _offers(raw: Any, defaults: Mapping[str, Any], sources: Mapping[str, Source], ctx: _Ctx
            ) -> dict[str, tuple[Offer, ...]]:
    if raw is None:
        return {}
    raw = _mapping(raw, ctx, "regions")
    out = {}
    for region, entry in raw.items():
        if region not in defaults["regions"]:
            raise ctx.error(f"unknown region {region!r}; known: "
                            f"{', '.join(defaults['regions'])}", f"regions.{region}")
        where = f"regions.{region}"
        current = _offer(entry, region, defaults, sources, ctx, where)
        history = entry.get("history") or []
        if not isinstance(history, list):
            raise ctx.error("expected a list of earlier offers", f"{where}.history")
        older = [_offer(h, region, defaults, sources, ctx, f"{where}.history[{i}]",
                        inherited={"free_quota": None}) for i, h in enumerate(history)]
        chain = [current, *older]
        for i in range(1, len(chain)):
            if chain[i].effective_date >= chain[i - 1].effective_date:
                raise ctx.error("history must be newest first: each earlier offer took effect "
                                "before the one above it", f"{where}.history[{i - 1}].effective")
        out[region] = tuple(chain)
    # Deployment modes that publish no list of their own but share another's (Frankfurt shows
    # the Global figures) get that list, under their own region name.
    for region, entry in defaults["regions"].items():
        source_region = entry.get("prices_from")
        if region not in out and source_region in out:
            out[region] = tuple(replace(o, region=region) for o in out[source_region])
    return out
