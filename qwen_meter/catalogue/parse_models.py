"""Parsing one model entry (or the body of a name rule) into a :class:`ModelSpec`.

Checks the tokenizer family and chat-template profile exist, the thinking mode, status, kind,
aliases, modalities, snapshot and vision rule; the entry's ``regions`` become its offers
(:mod:`.parse_offers`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from types import MappingProxyType
from typing import Any

from ..base.errors import UnknownFamily
from ..tokens.families import get_family
from ..tokens.media import VisionRule
from ..tokens.templates import get_profile
from .parse_fields import _Ctx, _known_keys, _mapping
from .parse_offers import _offers
from .records import MODEL_KINDS, STATUSES, THINKING_KINDS, ModelSpec, Source

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
        # Sane ranges, checked here so a typo fails at load naming the field, not later
        # inside the pixel arithmetic of the first image counted (1e-300 px patches).
        whole, low, high = _VISION_RANGES[key]
        if (whole and not isinstance(value, int)) or not low <= value <= high:
            kind = "a whole number" if whole else "a number"
            raise ctx.error(f"must be {kind} from {low} to {high}, got {value!r}",
                            f"vision.{key}")
    rule = VisionRule(**raw)
    if rule.min_tokens > rule.max_tokens:
        raise ctx.error(f"min_tokens {rule.min_tokens} is above max_tokens {rule.max_tokens}",
                        "vision.min_tokens")
    return rule


#: (whole number?, lowest, highest) of each vision field; real models use patches of 14-32
#: px, caps of a few thousand tokens per image, 25 audio tokens a second, 2 video frames.
_VISION_RANGES: dict[str, tuple[bool, float, float]] = {
    "patch": (True, 1, 1024), "min_tokens": (True, 1, 1_000_000),
    "max_tokens": (True, 1, 1_000_000), "max_tokens_highres": (True, 1, 1_000_000),
    "audio_tokens_per_second": (False, 0.01, 10_000), "video_fps": (False, 0.01, 1_000),
    "video_temporal_patch": (True, 1, 64)}


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
