"""Chat-template profiles: the few switches that tell the Qwen template generations apart.

The profiles live in ``data/templates.yaml``; a profile may ``extends:`` another and change
only what differs.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any

from ..base.data import data_dir, load_yaml, lookup
from ..base.errors import CatalogueError
from .tables import loaded_table

TOOLS_STYLES = ("qwen2.5", "qwen3", "qwen3.5")
TOOL_CALL_STYLES = ("json", "xml")
ARGUMENT_MODES = ("parse", "verbatim", "tojson")
REASONING_STYLES = ("none", "qwen3", "qwen3.5")


@dataclass(frozen=True)
class TemplateProfile:
    """How one model generation renders a chat request (see ``data/templates.yaml``)."""

    name: str
    description: str
    default_system: str | None
    tools: str
    tool_calls: str
    tool_arguments: str
    reasoning: str
    trim_content: bool
    strict: bool
    generation_thinking: str
    generation_non_thinking: str
    thinking_default: bool

    def generation_prompt(self, enable_thinking: bool | None) -> str:
        """The text that starts the assistant's turn."""
        thinking = self.thinking_default if enable_thinking is None else enable_thinking
        suffix = self.generation_thinking if thinking else self.generation_non_thinking
        return "<|im_start|>assistant\n" + suffix


_CHOICES: dict[str, tuple[str, ...]] = {
    "tools": TOOLS_STYLES,
    "tool_calls": TOOL_CALL_STYLES,
    "tool_arguments": ARGUMENT_MODES,
    "reasoning": REASONING_STYLES,
}


def _resolve(name: str, raw: Mapping[str, Any], file: str, seen: tuple[str, ...] = ()
             ) -> dict[str, Any]:
    if name in seen:
        raise CatalogueError("profile extends itself", file=file, model=name, field="extends")
    entry = raw.get(name)
    if not isinstance(entry, dict):
        raise CatalogueError("unknown profile", file=file, model=seen[-1] if seen else name,
                             field="extends")
    parent = entry.get("extends")
    merged = _resolve(parent, raw, file, (*seen, name)) if parent else {}
    merged.update({k: v for k, v in entry.items() if k != "extends"})
    return merged


def _build(name: str, fields: dict[str, Any], file: str) -> TemplateProfile:
    def field(key: str, kind: type | tuple[type, ...]) -> Any:
        value = fields.get(key)
        if not isinstance(value, kind):
            raise CatalogueError("missing or of the wrong type", file=file, model=name, field=key)
        if key in _CHOICES and value not in _CHOICES[key]:
            raise CatalogueError(f"must be one of {', '.join(_CHOICES[key])}", file=file,
                                 model=name, field=key)
        return value

    generation = field("generation", dict)
    for key in ("thinking", "non_thinking"):
        if not isinstance(generation.get(key), str):
            raise CatalogueError("expected a string", file=file, model=name,
                                 field=f"generation.{key}")
    return TemplateProfile(
        name=name,
        description=str(fields.get("description", "")).strip(),
        default_system=field("default_system", (str, type(None))),
        tools=field("tools", str),
        tool_calls=field("tool_calls", str),
        tool_arguments=field("tool_arguments", str),
        reasoning=field("reasoning", str),
        trim_content=field("trim_content", bool),
        strict=field("strict", bool),
        generation_thinking=generation["thinking"],
        generation_non_thinking=generation["non_thinking"],
        thinking_default=field("thinking_default", bool),
    )


@cache
def _profiles() -> Mapping[str, TemplateProfile]:
    path = data_dir() / "templates.yaml"
    doc = loaded_table("templates")
    if doc is None:
        doc = load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("profiles"), dict):
        raise CatalogueError("expected a mapping with 'profiles'", file=str(path))
    raw = doc["profiles"]
    return MappingProxyType({
        name: _build(name, _resolve(name, raw, str(path)), str(path)) for name in raw
    })


def get_profile(name: str | TemplateProfile) -> TemplateProfile:
    """Look up a template profile by name; a profile object is returned unchanged."""
    if isinstance(name, TemplateProfile):
        return name
    return lookup(_profiles(), name, "template profile")


def profile_names() -> list[str]:
    """All known template profile names."""
    return sorted(_profiles())


@dataclass(frozen=True)
class Features:
    """Which models get the request features of ``data/templates.yaml``'s ``features:``."""

    preserve_thinking: re.Pattern[str]
    preserve_thinking_default: re.Pattern[str]
    translation: re.Pattern[str]
    translation_overhead: int
    #: models whose bill counts a partial prefix as a closed turn plus a generation prompt
    partial_billed_closed: re.Pattern[str]


@cache
def features() -> Features:
    """The ``features:`` section of ``data/templates.yaml``."""
    path = data_dir() / "templates.yaml"
    doc = loaded_table("templates")
    if doc is None:
        doc = load_yaml(path)
    raw = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(raw, dict):
        raise CatalogueError("expected a 'features' mapping", file=str(path))

    def section(name: str) -> Mapping[str, Any]:
        value = raw.get(name)
        if not isinstance(value, dict):
            raise CatalogueError("expected a mapping", file=str(path), field=f"features.{name}")
        return value

    def pattern(name: str, key: str) -> re.Pattern[str]:
        value = section(name).get(key)
        if not isinstance(value, str):
            raise CatalogueError("expected a regex string", file=str(path),
                                 field=f"features.{name}.{key}")
        try:
            return re.compile(value, re.IGNORECASE)
        except re.error as exc:
            raise CatalogueError(f"bad regex: {exc}", file=str(path),
                                 field=f"features.{name}.{key}") from None

    overhead = section("translation").get("overhead_tokens")
    if isinstance(overhead, bool) or not isinstance(overhead, int) or overhead < 0:
        raise CatalogueError("expected a whole number", file=str(path),
                             field="features.translation.overhead_tokens")
    return Features(pattern("preserve_thinking", "models"),
                    pattern("preserve_thinking", "default"),
                    pattern("translation", "models"), overhead,
                    pattern("partial_billed_closed", "models"))
