"""The model catalogue: ``data/models.yaml`` loaded into frozen :class:`ModelSpec` records.

A model name resolves, through aliases and the name rules for unlisted snapshots, to the
tokenizer family and chat-template profile it uses.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ._data import data_dir, load_yaml
from .errors import CatalogueError, UnknownFamily, UnknownModel
from .tokens.families import get_family
from .tokens.media import VisionRule
from .tokens.templates import get_profile


@dataclass(frozen=True)
class ModelSpec:
    """What qwen_meter knows about one model name."""

    name: str
    family: str
    template: str
    thinking_default: bool | None = None
    vision: VisionRule | None = None
    aliases: tuple[str, ...] = ()
    matched_rule: str | None = None


_VISION_FIELDS = {f.name: f.type for f in fields(VisionRule)}


def _vision(raw: Any, file: str, model: str) -> VisionRule | None:
    if raw is None:
        return None
    if not isinstance(raw, Mapping):
        raise CatalogueError("expected a mapping", file=file, model=model, field="vision")
    unknown = set(raw) - set(_VISION_FIELDS)
    if unknown:
        raise CatalogueError(f"unknown key {sorted(unknown)[0]!r}", file=file, model=model,
                             field="vision")
    for key, value in raw.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
            raise CatalogueError("must be a positive number", file=file, model=model,
                                 field=f"vision.{key}")
    return VisionRule(**raw)


def _spec(name: str, raw: Any, file: str, rule: str | None = None) -> ModelSpec:
    if not isinstance(raw, Mapping):
        raise CatalogueError("expected a mapping", file=file, model=name)
    for key in ("family", "template"):
        if not isinstance(raw.get(key), str):
            raise CatalogueError("missing or not a string", file=file, model=name, field=key)
    try:
        get_family(raw["family"])
    except UnknownFamily as exc:
        raise CatalogueError(str(exc), file=file, model=name, field="family") from None
    try:
        get_profile(raw["template"])
    except UnknownFamily as exc:
        raise CatalogueError(str(exc), file=file, model=name, field="template") from None
    thinking = raw.get("thinking_default")
    if thinking is not None and not isinstance(thinking, bool):
        raise CatalogueError("must be true or false", file=file, model=name,
                             field="thinking_default")
    aliases = raw.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise CatalogueError("must be a list of names", file=file, model=name, field="aliases")
    return ModelSpec(name=name, family=raw["family"], template=raw["template"],
                     thinking_default=thinking, vision=_vision(raw.get("vision"), file, name),
                     aliases=tuple(aliases), matched_rule=rule)


class Catalogue:
    """Model specs by name, with aliases and name rules."""

    def __init__(self, models: Mapping[str, ModelSpec],
                 rules: tuple[tuple[re.Pattern[str], dict[str, Any]], ...] = (),
                 source: str = "") -> None:
        self.models = MappingProxyType(dict(models))
        self.rules = rules
        self.source = source
        index: dict[str, str] = {}
        for spec in models.values():
            for name in (spec.name, *spec.aliases):
                index[name.lower()] = spec.name
        self._index = index

    @classmethod
    def from_file(cls, path: str | Path) -> Catalogue:
        """Load and validate one catalogue file."""
        path = Path(path)
        file = str(path)
        doc = load_yaml(path)
        if not isinstance(doc, Mapping) or not isinstance(doc.get("models"), Mapping):
            raise CatalogueError("expected a mapping with 'models'", file=file)
        models = {str(name): _spec(str(name), raw, file) for name, raw in doc["models"].items()}
        rules = []
        for n, rule in enumerate(doc.get("name_rules") or []):
            if not isinstance(rule, Mapping) or not isinstance(rule.get("match"), str):
                raise CatalogueError("a rule needs 'match'", file=file, field=f"name_rules[{n}]")
            try:
                pattern = re.compile(rule["match"], re.IGNORECASE)
            except re.error as exc:
                raise CatalogueError(f"bad regular expression: {exc}", file=file,
                                     field=f"name_rules[{n}].match") from None
            body = {k: v for k, v in rule.items() if k != "match"}
            _spec(rule["match"], body, file)  # validate now, not at first use
            rules.append((pattern, body))
        return cls(models, tuple(rules), file)

    def resolve(self, name: str) -> ModelSpec:
        """The spec of ``name``: exact or alias (case-insensitive), then the name rules.

        Raises :class:`~qwen_meter.errors.UnknownModel` with close matches otherwise.
        """
        if not isinstance(name, str) or not name:
            raise UnknownModel(repr(name))
        key = name.strip().lower()
        if "/" in key:  # "dashscope/qwen-plus", as LiteLLM and others write it
            key = key.rsplit("/", 1)[1]
        canonical = self._index.get(key)
        if canonical is not None:
            return self.models[canonical]
        for pattern, body in self.rules:
            if pattern.fullmatch(key):
                return _spec(key, body, self.source, rule=pattern.pattern)
        raise UnknownModel(name, difflib.get_close_matches(key, list(self._index), n=3))

    def names(self) -> list[str]:
        """All listed model names (aliases not included)."""
        return sorted(self.models)


@cache
def default_catalogue() -> Catalogue:
    """The catalogue shipped with qwen_meter (``data/models.yaml``)."""
    return Catalogue.from_file(data_dir() / "models.yaml")


def resolve(name: str) -> ModelSpec:
    """Resolve ``name`` in the default catalogue."""
    return default_catalogue().resolve(name)
