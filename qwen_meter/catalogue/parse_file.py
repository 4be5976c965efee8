"""Parsing the file-level parts of a catalogue: its top-level keys, how override files merge
onto it, the ``defaults`` table (deployment regions and their endpoint hosts, cache fractions,
the Batch Chat API endpoint, free quotas) and the ``sources`` table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

from .parse_fields import _Ctx, _date, _known_keys, _mapping, _money
from .records import CURRENCIES, SOURCE_KINDS, CacheRules, Source

_TOP_KEYS = ("schema", "catalogue", "defaults", "sources", "models", "name_rules")


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
