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
from dataclasses import dataclass, field, fields
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._data import data_dir, load_yaml
from .errors import CatalogueError, NotOffered, UnknownFamily, UnknownModel
from .tokens.families import get_family
from .tokens.media import VisionRule
from .tokens.templates import get_profile

#: Environment variable naming user override files (separated by os.pathsep).
OVERRIDE_ENV = "QWEN_METER_CATALOGUE"
#: Environment variable naming the default region.
REGION_ENV = "QWEN_METER_REGION"
CURRENCIES = ("CNY", "USD")
THINKING_KINDS = ("none", "hybrid", "only")
STATUSES = ("current", "legacy", "retiring")


@dataclass(frozen=True)
class Source:
    """Where a figure comes from, and the date of that source."""

    id: str
    url: str
    as_of: dt.date
    kind: str = "official"
    note: str = ""


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


PRICE_FIELDS = ("input", "output", "output_thinking", "cache_hit", "input_audio", "input_image",
                "output_audio", "output_media_input")


@dataclass(frozen=True)
class PriceTier:
    """Prices per 1M tokens for requests whose input is in ``(above, upto]``."""

    above: int
    upto: int | None
    input: Decimal | None = None
    output: Decimal | None = None
    output_thinking: Decimal | None = None
    cache_hit: Decimal | None = None
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
    """Requests and tokens (input + output) per minute, per root account and model."""

    rpm: int | None
    tpm: int | None
    source: Source


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

    @property
    def priced(self) -> bool:
        return bool(self.tiers)

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
        for offer in offers:  # newest first
            if offer.as_of <= at:
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
    if isinstance(value, str):
        try:
            parts = [int(p) for p in value.split("-")]
            return dt.date(parts[0], parts[1] if len(parts) > 1 else 1,
                           parts[2] if len(parts) > 2 else 1)
        except (ValueError, IndexError):
            pass
    raise ctx.error("expected a date (YYYY-MM-DD)", where)


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


_OFFER_KEYS = ("source", "as_of", "currency", "note", "limits", "price", "tiers", "batch",
               "rate_limits", "free_quota", "history")


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
    batch = None
    if "batch" in raw:
        batch = _money(raw["batch"], ctx, f"{where}.batch")
        if not 0 < batch <= 1:
            raise ctx.error("batch is a factor in (0, 1]", f"{where}.batch")
    rate_limits = None
    if "rate_limits" in raw:
        rl = _mapping(raw["rate_limits"], ctx, f"{where}.rate_limits")
        _known_keys(rl, ("rpm", "tpm", "source"), ctx, f"{where}.rate_limits")
        rate_limits = RateLimits(
            rpm=_count(rl["rpm"], ctx, f"{where}.rate_limits.rpm") if "rpm" in rl else None,
            tpm=_count(rl["tpm"], ctx, f"{where}.rate_limits.tpm") if "tpm" in rl else None,
            source=_source(rl.get("source", raw.get("source")), sources, ctx,
                           f"{where}.rate_limits.source"))
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
    return Offer(region=region, currency=currency, as_of=as_of, source=source, limits=limits,
                 tiers=tiers, batch=batch, cache=defaults["cache"], rate_limits=rate_limits,
                 free_quota=free_quota, note=str(raw.get("note", "")))


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
            if chain[i].as_of >= chain[i - 1].as_of:
                raise ctx.error("history must be newest first, older than the current offer",
                                f"{where}.history[{i - 1}].as_of")
        out[region] = tuple(chain)
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
    return ModelSpec(
        name=name, family=raw["family"], template=raw["template"], thinking=thinking,
        thinking_default=thinking_default, vision=_vision(raw.get("vision"), ctx),
        aliases=names[0], snapshot=snapshot, modalities=names[1] or ("text",), status=status,
        kind=str(raw.get("kind", "chat")), note=str(raw.get("note", "")),
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


_REGIONS = {"cn": {"currency": "CNY"}, "intl": {"currency": "USD"}}


def _defaults(doc: Mapping[str, Any], ctx: _Ctx) -> dict[str, Any]:
    raw = _mapping(doc.get("defaults", {}), ctx, "defaults")
    regions = _mapping(raw.get("regions", _REGIONS), ctx, "defaults.regions")
    for region, entry in regions.items():
        currency = _mapping(entry, ctx, f"defaults.regions.{region}").get("currency")
        if currency not in CURRENCIES:
            raise ctx.error(f"unknown currency {currency!r}", f"defaults.regions.{region}")
    cache_raw = _mapping(raw.get("cache", {}), ctx, "defaults.cache")
    _known_keys(cache_raw, [f.name for f in fields(CacheRules)], ctx, "defaults.cache")
    cache_rules = CacheRules(**{k: _money(v, ctx, f"defaults.cache.{k}")
                                for k, v in cache_raw.items()})
    return {"regions": regions, "cache": cache_rules,
            "free_quota": _mapping(raw.get("free_quota", {}), ctx, "defaults.free_quota")}


def _sources(doc: Mapping[str, Any], ctx: _Ctx) -> dict[str, Source]:
    out = {}
    for sid, raw in _mapping(doc.get("sources", {}), ctx, "sources").items():
        raw = _mapping(raw, ctx, f"sources.{sid}")
        url = raw.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ctx.error("a source needs an http(s) url", f"sources.{sid}.url")
        out[str(sid)] = Source(str(sid), url, _date(raw.get("as_of"), ctx, f"sources.{sid}.as_of"),
                               str(raw.get("kind", "official")), str(raw.get("note", "")))
    return out


# --- the catalogue ----------------------------------------------------------------------

class Catalogue:
    """Model specs by name, with aliases, snapshots and name rules."""

    def __init__(self, models: Mapping[str, ModelSpec],
                 rules: tuple[tuple[re.Pattern[str], ModelSpec], ...] = (),
                 files: tuple[str, ...] = ()) -> None:
        self.models = MappingProxyType(dict(models))
        self.rules = rules
        self.files = files
        # Names first, then aliases, then snapshots: a snapshot with its own entry (its own,
        # usually lower, rate limits) resolves to that entry, not to the stable name.
        index: dict[str, str] = {spec.name.lower(): spec.name for spec in models.values()}
        for spec in models.values():
            for alias in spec.aliases:
                index.setdefault(alias.lower(), spec.name)
        for spec in models.values():
            if spec.snapshot:
                index.setdefault(spec.snapshot.lower(), spec.name)
        self._index = index

    @classmethod
    def load(cls, path: str | Path | None = None,
             overrides: Sequence[str | Path] = ()) -> Catalogue:
        """Load the catalogue (default: the shipped one) with override files merged on top."""
        from . import validate

        validate.path(path, "Catalogue.load(path=)")
        validate.sequence(overrides, "Catalogue.load(overrides=)")  # a lone str: its letters
        for n, override in enumerate(overrides):
            validate.path(override, f"Catalogue.load(overrides[{n}]=)")
        base_path = Path(path) if path is not None else data_dir() / "models.yaml"
        files = [base_path, *map(Path, overrides)]
        doc: Any = {}
        origin: dict[str, str] = {}
        for file in files:
            part = load_yaml(file)
            if part is None:
                continue
            if not isinstance(part, Mapping):
                raise CatalogueError("expected a mapping at the top level", file=str(file))
            for name in _mapping(part.get("models", {}), _Ctx(str(file)), "models"):
                origin[str(name)] = str(file)
            doc = _merge(doc, part)
        top = _Ctx(str(files[-1]) if len(files) > 1 else str(base_path))
        if not isinstance(doc, Mapping) or not isinstance(doc.get("models"), Mapping):
            raise top.error("expected a mapping with 'models'")
        defaults = _defaults(doc, top)
        sources = _sources(doc, top)
        models = {}
        for name, raw in doc["models"].items():
            ctx = _Ctx(origin.get(str(name), str(base_path)), str(name))
            models[str(name)] = _spec(str(name), raw, ctx, defaults, sources)
        rules = []
        if not isinstance(doc.get("name_rules") or [], list):
            raise top.error("expected a list of rules", "name_rules")
        for n, rule in enumerate(doc.get("name_rules") or []):
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
        catalogue = cls(models, tuple(rules), tuple(map(str, files)))
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
        for pattern, spec in self.rules:
            if pattern.fullmatch(key):
                return _renamed(spec, key)
        raise UnknownModel(name, difflib.get_close_matches(key, list(self._index), n=3))

    def names(self) -> list[str]:
        """All listed model names (aliases not included)."""
        return sorted(self.models)

    def __iter__(self) -> Iterator[ModelSpec]:
        return iter(self.models.values())

    def __len__(self) -> int:
        return len(self.models)


@cache
def _renamed(spec: ModelSpec, name: str) -> ModelSpec:
    from dataclasses import replace

    return replace(spec, name=name)


@cache
def _default(overrides: tuple[str, ...]) -> Catalogue:
    return Catalogue.load(overrides=overrides)


def default_catalogue() -> Catalogue:
    """The shipped catalogue, with the files named in $QWEN_METER_CATALOGUE merged on top."""
    env = os.environ.get(OVERRIDE_ENV, "")
    return _default(tuple(p for p in env.split(os.pathsep) if p))


def resolve(name: str) -> ModelSpec:
    """Resolve ``name`` in the default catalogue."""
    return default_catalogue().resolve(name)
