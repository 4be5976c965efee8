"""A small index from model name to what counting needs, kept as JSON next to the user's cache.

Counting a model's text needs its tokenizer family, template profile, thinking default and
media rule; loading the whole catalogue (YAML, 95 models, prices, history) for that costs more
than loading the tokenizer. The index holds just those fields for every name, alias and
snapshot, the name rules, and the tokenizer and template tables, keyed by a digest of the
data files, so it is rebuilt whenever they change. Catalogue overrides
($QWEN_METER_CATALOGUE) bypass it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ..base.data import data_dir
from ..base.snapshots import latest_dates, newer_snapshot_base, newer_snapshot_note
from ..tokens.media import VisionRule
from ..tokens.tables import set_table_source

#: Where the index is kept (default: $XDG_CACHE_HOME/qwen_meter or ~/.cache/qwen_meter).
CACHE_ENV = "QWEN_METER_CACHE"
_FILES = ("models.yaml", "templates.yaml", "tokenizers.yaml")
_VERSION = 1


@dataclass(frozen=True)
class ModelInfo:
    """What counting needs of one model."""

    name: str
    family: str
    template: str
    thinking_default: bool | None = None
    vision: VisionRule | None = None
    #: why counts of this name are a guess (a name rule's or a newer snapshot's), or None
    estimate_note: str | None = None


def _digest() -> str:
    sha = hashlib.sha1(str(_VERSION).encode(), usedforsecurity=False)
    for name in _FILES:
        sha.update((data_dir() / name).read_bytes())
    return sha.hexdigest()[:16]


def _cache_dir() -> Path:
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "qwen_meter"


def _info(spec: Any) -> dict[str, Any]:
    vision = None if spec.vision is None else dict(spec.vision.__dict__)
    return {"name": spec.name, "family": spec.family, "template": spec.template,
            "thinking_default": spec.thinking_default, "vision": vision}


def _build() -> dict[str, Any]:
    from ..base.data import load_yaml
    from ..catalogue.core import Catalogue

    catalogue = Catalogue.load()
    names: dict[str, dict[str, Any]] = {}
    for spec in catalogue:
        for key in (spec.name, *spec.aliases, *([spec.snapshot] if spec.snapshot else [])):
            # Resolved, so a name that is both an alias and an entry lands where the
            # catalogue sends it.
            names[key.lower()] = _info(catalogue.resolve(key))
    return {"version": _VERSION,
            "models": names,
            "rules": [[pattern.pattern, _info(spec)] for pattern, spec in catalogue.rules],
            "tokenizers": load_yaml(data_dir() / "tokenizers.yaml"),
            "templates": load_yaml(data_dir() / "templates.yaml")}


_loaded: dict[str, Any] | None = None


def loaded_table(name: str) -> Any:
    """The parsed ``tokenizers`` or ``templates`` file if the index is already loaded (so
    no YAML needs parsing), else None."""
    return None if _loaded is None else _loaded[name]


# The tokens layer reads its tables through this hook (it may not import the index).
set_table_source(loaded_table)


def load_index() -> dict[str, Any]:
    """The index for the installed data files: read from the cache, or built and saved."""
    global _loaded
    if _loaded is None:
        _loaded = _read_or_build()
    return _loaded


def _read_or_build() -> dict[str, Any]:
    digest = _digest()
    path = _cache_dir() / f"index-{digest}.json"
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(doc, dict) and doc.get("version") == _VERSION:
            return doc
    except (OSError, ValueError):
        pass
    doc = _build()
    try:  # a cache that cannot be written only costs the next process the rebuild
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
    return doc


def _model(raw: dict[str, Any], name: str, note: str | None = None) -> ModelInfo:
    vision = raw.get("vision")
    return ModelInfo(name, raw["family"], raw["template"], raw.get("thinking_default"),
                     None if vision is None else VisionRule(**vision), note)


@cache
def _dated() -> tuple[frozenset[str], dict[str, str]]:
    names = frozenset(load_index()["models"])
    return names, latest_dates(names)


@cache
def _rules() -> tuple[tuple[re.Pattern[str], dict[str, Any]], ...]:
    return tuple((re.compile(p, re.IGNORECASE), info) for p, info in load_index()["rules"])


@cache
def lookup(name: str) -> ModelInfo | None:
    """What counting needs of ``name`` (resolved as the catalogue resolves it), or None when
    the name is not in the index (the catalogue then says why)."""
    if not isinstance(name, str) or not name.strip():
        return None
    key = name.strip().lower()
    if "/" in key:
        key = key.rsplit("/", 1)[1]
    models = load_index()["models"]
    raw = models.get(key)
    if raw is not None:
        return _model(raw, raw["name"])
    base = newer_snapshot_base(key, *_dated())
    if base is not None:  # as the catalogue resolves it (base.snapshots)
        return _model(models[base], key, newer_snapshot_note(key, models[base]["name"]))
    for pattern, info in _rules():
        if pattern.fullmatch(key):
            return _model(info, key, rule_note(key, pattern.pattern))
    return None


def rule_note(name: str, rule: str) -> str:
    """What a count of a name only a name rule matched says about itself."""
    return (f"{name} is not in the catalogue; counted with the tokenizer and template of the "
            f"name rule {rule!r}, an estimate")
