"""The model catalogue: ``data/models.yaml`` (plus user overrides) loaded into a
:class:`Catalogue`, and name resolution.

A name resolves, through aliases, snapshots and the name rules for unlisted snapshots, to a
:class:`~qwen_meter.catalogue.records.ModelSpec`; an endpoint URL to its region. Everything is
validated when the file loads (the ``parse_*`` modules); errors name the file, the model and
the field. :func:`default_catalogue` is the catalogue in use (installed, else shipped, with
$QWEN_METER_CATALOGUE overrides), and :func:`resolve` resolves a name in it.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from ..base.data import data_dir, load_yaml, parse_yaml
from ..base.errors import CatalogueError, UnknownModel
from ..base.snapshots import latest_dates, newer_snapshot_base, newer_snapshot_note
from .installed import installed_path
from .parse_fields import _Ctx, _known_keys, _mapping
from .parse_file import _TOP_KEYS, _defaults, _merge, _sources
from .parse_models import _spec
from .records import OVERRIDE_ENV, ModelSpec


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
        # Dated names by base, to tell a snapshot newer than the catalogue from an older one.
        self._known = frozenset([*index, *self._snapshots])
        self._latest = latest_dates(self._known)

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
        base = newer_snapshot_base(key, self._known, self._latest)
        if base is not None:
            return _newer_snapshot(self.resolve(base), key)
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
def _newer_snapshot(spec: ModelSpec, name: str) -> ModelSpec:
    """A dated snapshot newer than any the catalogue lists: counted as its stable name is
    now, but unlisted (a guess, with no prices or limits of its own)."""
    return replace(spec, name=name, snapshot=None, aliases=(), offers=MappingProxyType({}),
                   matched_rule=f"newer snapshot of {spec.name}",
                   note=newer_snapshot_note(name, spec.name))


@cache
def _default(overrides: tuple[str, ...], installed: str | None,
             _stamp: tuple[int, ...]) -> Catalogue:
    catalogue = Catalogue.load(installed, overrides=overrides)
    _loaded.add((overrides, installed, _stamp))
    return catalogue


#: The keys of ``_default`` whose catalogue is parsed (``default_catalogue_loaded`` reads it).
_loaded: set[tuple[tuple[str, ...], str | None, tuple[int, ...]]] = set()


def _default_key() -> tuple[tuple[str, ...], str | None, tuple[int, ...]]:
    env = os.environ.get(OVERRIDE_ENV, "")
    overrides = tuple(p for p in env.split(os.pathsep) if p)
    try:
        # one stat per call: a file installed (or edited) by any process is seen at once,
        # and a new install is a new file, so the cache key changes with it
        st = installed_path().stat()
    except OSError:
        return overrides, None, ()
    return overrides, str(installed_path()), (st.st_mtime_ns, st.st_ino, st.st_size)


def default_catalogue() -> Catalogue:
    """The catalogue in use: the one installed by ``qwen-meter catalogue update`` if there is
    one, else the shipped one; the files named in $QWEN_METER_CATALOGUE merged on top."""
    return _default(*_default_key())


def default_catalogue_loaded() -> bool:
    """Whether :func:`default_catalogue` would answer from memory, parsing no file (the
    meter parses a new one off the event loop)."""
    return _default_key() in _loaded


def resolve(name: str) -> ModelSpec:
    """Resolve ``name`` in the default catalogue."""
    return default_catalogue().resolve(name)
