"""The model catalogue: ``data/models.yaml`` (plus user overrides) as frozen, typed records.

A name resolves, through aliases, snapshots and the name rules for unlisted snapshots, to a
:class:`ModelSpec`: tokenizer family, chat-template profile, and per region an :class:`Offer`
(limits, request-size price tiers, batch factor, rate limits, free quota, source and date).
Everything is validated when the file loads; errors name the file, the model and the field.
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..base.data import data_dir, load_yaml, parse_yaml
from ..base.errors import CatalogueError, NotOffered, UnknownFamily, UnknownModel
from ..tokens.families import get_family
from ..tokens.media import VisionRule
from ..tokens.templates import get_profile
from .installed import installed_path

#: Environment variable naming user override files (separated by os.pathsep).
OVERRIDE_ENV = "QWEN_METER_CATALOGUE"
#: Environment variable naming the default region.
REGION_ENV = "QWEN_METER_REGION"
CURRENCIES = ("CNY", "USD")
THINKING_KINDS = ("none", "hybrid", "only")
STATUSES = ("current", "legacy", "retiring")
MODEL_KINDS = ("chat", "embedding")
#: official: an Alibaba Cloud page; catalogue: a registry or catalogue citing one;
#: third-party: anything else (resellers, blogs) — such figures are flagged in the output.
SOURCE_KINDS = ("official", "catalogue", "third-party")
_TOP_KEYS = ("schema", "catalogue", "defaults", "sources", "models", "name_rules")


@dataclass(frozen=True)
class Source:
    """Where a figure comes from: ``as_of`` is when it was read, ``effective`` (if the source
    says) when its prices took effect."""

    id: str
    url: str
    as_of: dt.date
    kind: str = "official"
    note: str = ""
    effective: dt.date | None = None


@dataclass(frozen=True)
class Limits:
    """Token limits of one model in one region (None: not known)."""

    context: int | None = None
    context_thinking: int | None = None
    max_input: int | None = None
    max_input_thinking: int | None = None
    max_output: int | None = None
    max_output_thinking: int | None = None
    max_reasoning: int | None = None

    def input_limit(self, thinking: bool) -> int | None:
        return (self.max_input_thinking if thinking else None) or self.max_input

    def context_limit(self, thinking: bool) -> int | None:
        return (self.context_thinking if thinking else None) or self.context

    def output_limit(self, thinking: bool) -> int | None:
        return (self.max_output_thinking if thinking else None) or self.max_output


PRICE_FIELDS = ("input", "output", "output_thinking", "cache_hit", "cache_explicit_hit",
                "cache_creation", "input_audio", "input_image", "output_audio",
                "output_media_input")


@dataclass(frozen=True)
class PriceTier:
    """Prices per 1M tokens for requests whose input is in ``(above, upto]``."""

    above: int
    upto: int | None
    input: Decimal | None = None
    output: Decimal | None = None
    output_thinking: Decimal | None = None
    cache_hit: Decimal | None = None
    #: printed explicit-cache prices (3.7 / 3.8); otherwise the defaults' fractions apply
    cache_explicit_hit: Decimal | None = None
    cache_creation: Decimal | None = None
    input_audio: Decimal | None = None
    input_image: Decimal | None = None
    output_audio: Decimal | None = None
    output_media_input: Decimal | None = None

    def contains(self, input_tokens: int) -> bool:
        return input_tokens > self.above and (self.upto is None or input_tokens <= self.upto)


@dataclass(frozen=True)
class CacheRules:
    """Cache prices as fractions of the input price (used where no cache price is printed)."""

    implicit_hit: Decimal = Decimal("0.2")
    explicit_create: Decimal = Decimal("1.25")
    explicit_hit: Decimal = Decimal("0.1")


@dataclass(frozen=True)
class RateLimits:
    """Requests and tokens (input + output) per root account and model.

    DashScope publishes most limits per minute (``rpm``/``tpm``) and some per second
    (``rps``/``tps``, e.g. embeddings: 30 requests/s). A per-second limit is kept as such; its
    per-minute view is derived (``rps * 60``) and flagged by :attr:`per_second`, because
    DashScope enforces it in every second — a burst of ``rpm`` requests would be refused.
    """

    rpm: int | None
    tpm: int | None
    source: Source
    rps: int | None = None
    tps: int | None = None

    @property
    def per_second(self) -> bool:
        """Whether the published limit is per second (the per-minute figures are derived)."""
        return self.rps is not None or self.tps is not None


@dataclass(frozen=True)
class ToolFee:
    """A per-call fee for a built-in tool (web search ...), in the offer's currency."""

    per_call: Decimal
    source: Source
    note: str = ""


@dataclass(frozen=True)
class FreeQuota:
    """New-user free tokens for one model in one region."""

    tokens: int
    days: int
    source: Source


@dataclass(frozen=True)
class Offer:
    """One model in one region as of one date."""

    region: str
    currency: str
    as_of: dt.date
    source: Source
    limits: Limits
    tiers: tuple[PriceTier, ...] = ()
    batch: Decimal | None = None
    cache: CacheRules = field(default_factory=CacheRules)
    rate_limits: RateLimits | None = None
    free_quota: FreeQuota | None = None
    note: str = ""
    #: when these prices took effect (``as_of`` is when the source was read)
    effective: dt.date | None = None
    #: factor of the synchronous Batch Chat API endpoint, where the model is offered there
    batch_chat: Decimal | None = None
    tool_fees: Mapping[str, ToolFee] = field(default_factory=dict)

    @property
    def priced(self) -> bool:
        return bool(self.tiers)

    @property
    def effective_date(self) -> dt.date:
        """The date the offer took effect (its source's date when the source gives none)."""
        return self.effective or self.as_of

    @property
    def source_kind(self) -> str:
        return self.source.kind

    def tier_for(self, input_tokens: int) -> PriceTier | None:
        """The request-size tier that prices a request with ``input_tokens`` of input."""
        for tier in self.tiers:
            if tier.contains(max(input_tokens, 1)):
                return tier
        return self.tiers[-1] if self.tiers else None


@dataclass(frozen=True, eq=False)
class ModelSpec:
    """What qwen_meter knows about one model name."""

    name: str
    family: str
    template: str
    thinking: str = "none"
    thinking_default: bool | None = None
    vision: VisionRule | None = None
    aliases: tuple[str, ...] = ()
    snapshot: str | None = None
    modalities: tuple[str, ...] = ("text",)
    status: str = "current"
    kind: str = "chat"
    note: str = ""
    offers: Mapping[str, tuple[Offer, ...]] = field(default_factory=dict)
    matched_rule: str | None = None

    @property
    def regions(self) -> tuple[str, ...]:
        return tuple(self.offers)

    def offer(self, region: str | None = None, at: dt.date | None = None) -> Offer:
        """The offer in ``region`` (default: $QWEN_METER_REGION or ``cn``), current or as of ``at``.

        Raises :class:`~qwen_meter.errors.NotOffered` if the model has no entry there.
        """
        region = region or os.environ.get(REGION_ENV) or "cn"
        offers = self.offers.get(region)
        if not offers:
            raise NotOffered(self.name, region, self.regions)
        if at is None:
            return offers[0]
        for offer in offers:  # newest effective date first
            if offer.effective_date <= at:
                return offer
        return offers[-1]


# --- validation -------------------------------------------------------------------------

class _Ctx:
    """Where we are in a file, so every error can name it."""

    def __init__(self, file: str, model: str | None = None) -> None:
        self.file = file
        self.model = model

    def error(self, message: str, field: str | None = None) -> CatalogueError:
        return CatalogueError(message, file=self.file, model=self.model, field=field)


def _date(value: Any, ctx: _Ctx, where: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and _DATE.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise ctx.error(f"expected a date (YYYY-MM-DD), got {value!r}", where)


_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def _count(value: Any, ctx: _Ctx, where: str, *, allow_zero: bool = False) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < (0 if allow_zero else 1):
        raise ctx.error("expected a positive whole number" if not allow_zero
                        else "expected a whole number >= 0", where)
    return value


def _money(value: Any, ctx: _Ctx, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ctx.error("expected a price (a number)", where)
    try:
        amount = Decimal(str(value))
    except InvalidOperation:
        raise ctx.error("expected a price (a number)", where) from None
    if not amount.is_finite() or amount < 0:
        raise ctx.error("a price cannot be negative", where)
    return amount


def _mapping(value: Any, ctx: _Ctx, where: str | None) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ctx.error("expected a mapping", where)
    return value


def _known_keys(raw: Mapping[str, Any], allowed: Sequence[str], ctx: _Ctx, where: str) -> None:
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        raise ctx.error(f"unknown key {unknown[0]!r}", f"{where}.{unknown[0]}" if where
                        else str(unknown[0]))


def _source(value: Any, sources: Mapping[str, Source], ctx: _Ctx, where: str) -> Source:
    if not isinstance(value, str) or value not in sources:
        raise ctx.error(f"unknown source {value!r}; known: {', '.join(sorted(sources))}", where)
    return sources[value]


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


_VISION_FIELDS = tuple(f.name for f in fields(VisionRule))
_MODEL_KEYS = ("family", "template", "thinking", "thinking_default", "vision", "aliases",
               "snapshot", "modalities", "status", "kind", "note", "regions")


def _vision(raw: Any, ctx: _Ctx) -> VisionRule | None:
    if raw is None:
        return None
    raw = _mapping(raw, ctx, "vision")
    _known_keys(raw, _VISION_FIELDS, ctx, "vision")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise ctx.error("must be a positive number", f"vision.{key}")
    return VisionRule(**raw)


def _spec(name: str, raw: Any, ctx: _Ctx, defaults: Mapping[str, Any],
          sources: Mapping[str, Source], rule: str | None = None) -> ModelSpec:
    raw = _mapping(raw, ctx, None)
    _known_keys(raw, _MODEL_KEYS, ctx, "")
    for key in ("family", "template"):
        if not isinstance(raw.get(key), str):
            raise ctx.error("missing or not a string", key)
    try:
        get_family(raw["family"])
    except UnknownFamily as exc:
        raise ctx.error(str(exc), "family") from None
    try:
        get_profile(raw["template"])
    except UnknownFamily as exc:
        raise ctx.error(str(exc), "template") from None
    thinking_default = raw.get("thinking_default")
    if thinking_default is not None and not isinstance(thinking_default, bool):
        raise ctx.error("must be true or false", "thinking_default")
    thinking = raw.get("thinking", "none")
    if thinking not in THINKING_KINDS:
        raise ctx.error(f"must be one of {', '.join(THINKING_KINDS)}", "thinking")
    status = raw.get("status", "current")
    if status not in STATUSES:
        raise ctx.error(f"must be one of {', '.join(STATUSES)}", "status")
    names = []
    for key in ("aliases", "modalities"):
        value = raw.get(key, [])
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            raise ctx.error("must be a list of names", key)
        names.append(tuple(value))
    snapshot = raw.get("snapshot")
    if snapshot is not None and not isinstance(snapshot, str):
        raise ctx.error("must be a model name", "snapshot")
    kind = raw.get("kind", "chat")
    if kind not in MODEL_KINDS:
        raise ctx.error(f"must be one of {', '.join(MODEL_KINDS)}", "kind")
    if not isinstance(raw.get("note", ""), str):
        raise ctx.error("expected text", "note")
    return ModelSpec(
        name=name, family=raw["family"], template=raw["template"], thinking=thinking,
        thinking_default=thinking_default, vision=_vision(raw.get("vision"), ctx),
        aliases=names[0], snapshot=snapshot, modalities=names[1] or ("text",), status=status,
        kind=kind, note=str(raw.get("note", "")),
        offers=MappingProxyType(_offers(raw.get("regions"), defaults, sources, ctx)),
        matched_rule=rule)


def _merge(base: Any, override: Any) -> Any:
    """Deep merge: mappings merge key by key, anything else is replaced."""
    if isinstance(base, Mapping) and isinstance(override, Mapping):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    return override


# A file without a region table (a small standalone catalogue) gets the two historic regions.
_REGIONS = {"cn": {"currency": "CNY",
                   "base_url": "https://dashscope.aliyuncs.com/compatible-mode/v1"},
            "intl": {"currency": "USD",
                     "base_url": "https://dashscope-intl.aliyuncs.com/compatible-mode/v1"}}
_REGION_KEYS = ("name", "currency", "base_url", "hosts", "prices_from", "source", "note")


def _host_pattern(url: Any, ctx: _Ctx, where: str) -> str:
    """The host of an endpoint URL; ``{workspace}.`` (a per-account label) becomes ``*.``."""
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ctx.error("expected an http(s) URL", where)
    host = url.split("://", 1)[1].split("/", 1)[0].split(":", 1)[0].lower()
    host = re.sub(r"^\{[^}]+\}\.", "*.", host)
    if not host or "{" in host:
        raise ctx.error("expected an http(s) URL", where)
    return host


def _regions(raw: Any, ctx: _Ctx) -> dict[str, Any]:
    regions = _mapping(raw, ctx, "defaults.regions")
    out: dict[str, Any] = {}
    for region, entry in regions.items():
        where = f"defaults.regions.{region}"
        entry = _mapping(entry, ctx, where)
        _known_keys(entry, _REGION_KEYS, ctx, where)
        if entry.get("currency") not in CURRENCIES:
            raise ctx.error(f"unknown currency {entry.get('currency')!r}", f"{where}.currency")
        hosts = entry.get("hosts", [])
        if not isinstance(hosts, list):
            raise ctx.error("expected a list of host names", f"{where}.hosts")
        patterns = [_host_pattern(entry.get("base_url"), ctx, f"{where}.base_url"),
                    *(_host_pattern(f"https://{h}" if isinstance(h, str) else h, ctx,
                                    f"{where}.hosts") for h in hosts)]
        prices_from = entry.get("prices_from")
        if prices_from is not None and (prices_from not in regions or prices_from == region):
            raise ctx.error(f"prices_from names no other region: {prices_from!r}",
                            f"{where}.prices_from")
        out[str(region)] = {**entry, "_hosts": tuple(patterns)}
    return out


def _batch_chat(raw: Any, regions: Mapping[str, Any], ctx: _Ctx) -> dict[str, Any] | None:
    if raw is None:
        return None
    where = "defaults.batch_chat"
    raw = _mapping(raw, ctx, where)
    _known_keys(raw, ("base_url", "region", "source", "note"), ctx, where)
    if raw.get("region") not in regions:
        raise ctx.error(f"unknown region {raw.get('region')!r}", f"{where}.region")
    return {**raw, "_host": _host_pattern(raw.get("base_url"), ctx, f"{where}.base_url")}


def _defaults(doc: Mapping[str, Any], ctx: _Ctx) -> dict[str, Any]:
    raw = _mapping(doc.get("defaults", {}), ctx, "defaults")
    regions = _regions(raw.get("regions", _REGIONS), ctx)
    cache_raw = _mapping(raw.get("cache", {}), ctx, "defaults.cache")
    _known_keys(cache_raw, [f.name for f in fields(CacheRules)], ctx, "defaults.cache")
    cache_rules = CacheRules(**{k: _money(v, ctx, f"defaults.cache.{k}")
                                for k, v in cache_raw.items()})
    return {"regions": regions, "cache": cache_rules,
            "batch_chat": _batch_chat(raw.get("batch_chat"), regions, ctx),
            "free_quota": _mapping(raw.get("free_quota", {}), ctx, "defaults.free_quota")}


def _sources(doc: Mapping[str, Any], ctx: _Ctx) -> dict[str, Source]:
    out = {}
    for sid, raw in _mapping(doc.get("sources", {}), ctx, "sources").items():
        raw = _mapping(raw, ctx, f"sources.{sid}")
        url = raw.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ctx.error("a source needs an http(s) url", f"sources.{sid}.url")
        _known_keys(raw, ("url", "as_of", "effective", "kind", "note"), ctx, f"sources.{sid}")
        kind = raw.get("kind", "official")
        if kind not in SOURCE_KINDS:
            raise ctx.error(f"kind must be one of {', '.join(SOURCE_KINDS)}, got {kind!r}",
                            f"sources.{sid}.kind")
        effective = _date(raw["effective"], ctx, f"sources.{sid}.effective") \
            if "effective" in raw else None
        out[str(sid)] = Source(str(sid), url, _date(raw.get("as_of"), ctx, f"sources.{sid}.as_of"),
                               kind, str(raw.get("note", "")), effective)
    return out


# --- the catalogue ----------------------------------------------------------------------

class Catalogue:
    """Model specs by name, with aliases, snapshots and name rules."""

    def __init__(self, models: Mapping[str, ModelSpec],
                 rules: tuple[tuple[re.Pattern[str], ModelSpec], ...] = (),
                 files: tuple[str, ...] = (), regions: Mapping[str, Any] | None = None,
                 batch_chat: Mapping[str, Any] | None = None) -> None:
        self.models = MappingProxyType(dict(models))
        self.rules = rules
        self.files = files
        #: region id -> {name, currency, base_url, ...} from ``defaults.regions``
        self.regions = MappingProxyType(dict(regions or {}))
        self.batch_chat = MappingProxyType(dict(batch_chat)) if batch_chat else None
        # Names first, then aliases, then snapshots: a snapshot with its own entry (its own,
        # usually lower, rate limits) resolves to that entry, not to the stable name.
        index: dict[str, str] = {spec.name.lower(): spec.name for spec in models.values()}
        for spec in models.values():
            for alias in spec.aliases:
                index.setdefault(alias.lower(), spec.name)
        self._snapshots: dict[str, str] = {}
        for spec in models.values():
            if spec.snapshot and spec.snapshot.lower() not in index:
                self._snapshots[spec.snapshot.lower()] = spec.name
        self._index = index

    @classmethod
    def load(cls, path: str | Path | None = None,
             overrides: Sequence[str | Path] = ()) -> Catalogue:
        """Load the catalogue (default: the shipped one) with override files merged on top."""
        from ..base import checks as validate

        validate.path(path, "Catalogue.load(path=)")
        validate.sequence(overrides, "Catalogue.load(overrides=)")  # a lone str: its letters
        for n, override in enumerate(overrides):
            validate.path(override, f"Catalogue.load(overrides[{n}]=)")
        base_path = Path(path) if path is not None else data_dir() / "models.yaml"
        files = [base_path, *map(Path, overrides)]
        return cls._build([(str(file), load_yaml(file)) for file in files])

    @classmethod
    def from_bytes(cls, data: bytes, file: str) -> Catalogue:
        """Validate and load a whole catalogue from bytes (a download); ``file`` names it."""
        return cls._build([(file, parse_yaml(data, file))])

    @classmethod
    def _build(cls, parts: Sequence[tuple[str, Any]]) -> Catalogue:
        doc: Any = {}
        origin: dict[str, str] = {}
        base_path = parts[0][0]
        for file, part in parts:
            if part is None:
                continue
            if not isinstance(part, Mapping):
                raise CatalogueError("expected a mapping at the top level", file=str(file))
            _known_keys(part, _TOP_KEYS, _Ctx(file), "")
            for name in _mapping(part.get("models", {}), _Ctx(str(file)), "models"):
                origin[str(name)] = str(file)
            doc = _merge(doc, part)
        files = [file for file, _ in parts]
        top = _Ctx(str(files[-1]))
        if not isinstance(doc, Mapping) or not isinstance(doc.get("models"), Mapping):
            raise top.error("expected a mapping with 'models'")
        defaults = _defaults(doc, top)
        sources = _sources(doc, top)
        models = {}
        for name, raw in doc["models"].items():
            ctx = _Ctx(origin.get(str(name), str(base_path)), str(name))
            models[str(name)] = _spec(str(name), raw, ctx, defaults, sources)
        rules = []
        rules_raw = doc.get("name_rules") or []
        if not isinstance(rules_raw, list):
            raise top.error("expected a list of rules", "name_rules")
        for n, rule in enumerate(rules_raw):
            if not isinstance(rule, Mapping) or not isinstance(rule.get("match"), str):
                raise top.error("a rule needs 'match'", f"name_rules[{n}]")
            try:
                pattern = re.compile(rule["match"], re.IGNORECASE)
            except re.error as exc:
                raise top.error(f"bad regular expression: {exc}",
                                f"name_rules[{n}].match") from None
            body = {k: v for k, v in rule.items() if k != "match"}
            ctx = _Ctx(top.file, rule["match"])
            rules.append((pattern, _spec(rule["match"], body, ctx, defaults, sources,
                                         rule=rule["match"])))
        catalogue = cls(models, tuple(rules), tuple(files), defaults["regions"],
                        defaults["batch_chat"])
        catalogue._check_names(top)
        return catalogue

    @classmethod
    def from_file(cls, path: str | Path) -> Catalogue:
        """Load one catalogue file, with no overrides."""
        return cls.load(path)

    def _check_names(self, ctx: _Ctx) -> None:
        seen: dict[str, str] = {name.lower(): name for name in self.models}
        for spec in self.models.values():
            for alias in spec.aliases:
                if seen.setdefault(alias.lower(), spec.name) != spec.name:
                    raise CatalogueError(f"alias {alias!r} also names another model",
                                         file=ctx.file, model=spec.name, field="aliases")

    def resolve(self, name: str) -> ModelSpec:
        """The spec of ``name``: exact, alias or snapshot (case-insensitive), then name rules.

        Raises :class:`~qwen_meter.errors.UnknownModel` with close matches otherwise.
        """
        if not isinstance(name, str) or not name.strip():
            raise UnknownModel(repr(name))
        key = name.strip().lower()
        if "/" in key:  # "dashscope/qwen-plus", as LiteLLM and others write it
            key = key.rsplit("/", 1)[1]
        canonical = self._index.get(key)
        if canonical is not None:
            return self.models[canonical]
        stable = self._snapshots.get(key)
        if stable is not None:
            return _snapshot_of(self.models[stable], key)
        for pattern, spec in self.rules:
            if pattern.fullmatch(key):
                return _renamed(spec, key)
        raise UnknownModel(name, difflib.get_close_matches(key, list(self._index), n=3))

    def region_for_url(self, url: str) -> str | None:
        """The region whose endpoint ``url`` points at (OpenAI-compatible or native
        ``/api/v1`` path; host match against each region's ``base_url`` and ``hosts``), or None.

        The Batch Chat API host maps to the region it serves (see :meth:`is_batch_chat_url`).
        """
        host = _url_host(url)
        if host is None:
            return None
        for region, entry in self.regions.items():
            if any(_host_matches(host, pattern) for pattern in entry.get("_hosts", ())):
                return str(region)
        if self.batch_chat and _host_matches(host, self.batch_chat["_host"]):
            return str(self.batch_chat["region"])
        return None

    def is_batch_chat_url(self, url: str) -> bool:
        """Whether ``url`` is the synchronous Batch Chat API endpoint (its own discount)."""
        host = _url_host(url)
        return bool(host and self.batch_chat and _host_matches(host, self.batch_chat["_host"]))

    def names(self) -> list[str]:
        """All listed model names (aliases not included)."""
        return sorted(self.models)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)


def _url_host(url: Any) -> str | None:
    if not isinstance(url, str) or not url.strip():
        return None
    text = url.strip()
    if "://" not in text:
        text = "https://" + text
    host = text.split("://", 1)[1].split("/", 1)[0].rsplit("@", 1)[-1].split(":", 1)[0]
    return host.lower().rstrip(".") or None


def _host_matches(host: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        return host.endswith(pattern[1:]) and len(host) > len(pattern) - 1
    return host == pattern


@cache
def _renamed(spec: ModelSpec, name: str) -> ModelSpec:
    return replace(spec, name=name)


@cache
def _snapshot_of(spec: ModelSpec, name: str) -> ModelSpec:
    """A dated snapshot that has no entry of its own, seen through its stable name.

    The sources say a snapshot shares its alias's prices and token limits; they also say dated
    snapshots have their own (much lower) rate limits and that batch does not serve snapshots.
    So it keeps the prices and limits, and loses the rate limits and the batch factors.
    """
    offers = {region: tuple(replace(o, batch=None, batch_chat=None, rate_limits=None,
                                    note=f"snapshot of {spec.name}; rate limits not published"
                                    + (f"; {o.note}" if o.note else ""))
                            for o in chain)
              for region, chain in spec.offers.items()}
    return replace(spec, name=name, snapshot=None, aliases=(),
                   offers=MappingProxyType(offers))


@cache
def _default(overrides: tuple[str, ...], installed: str | None,
             _stamp: tuple[int, ...]) -> Catalogue:
    return Catalogue.load(installed, overrides=overrides)


def default_catalogue() -> Catalogue:
    """The catalogue in use: the one installed by ``qwen-meter catalogue update`` if there is
    one, else the shipped one; the files named in $QWEN_METER_CATALOGUE merged on top."""
    env = os.environ.get(OVERRIDE_ENV, "")
    overrides = tuple(p for p in env.split(os.pathsep) if p)
    try:
        # one stat per call: a file installed (or edited) by any process is seen at once,
        # and a new install is a new file, so the cache key changes with it
        st = installed_path().stat()
    except OSError:
        return _default(overrides, None, ())
    return _default(overrides, str(installed_path()), (st.st_mtime_ns, st.st_ino, st.st_size))


def resolve(name: str) -> ModelSpec:
    """Resolve ``name`` in the default catalogue."""
    return default_catalogue().resolve(name)
