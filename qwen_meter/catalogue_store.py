"""Reading catalogue files safely, and the user's installed catalogue (update / rollback).

A catalogue can come from the network (``qwen-meter catalogue update --from URL``), so it is
read as hostile input: a size cap, strict UTF-8, and a cap on YAML aliases checked on the
event stream *before* anything is built (nested aliases expand exponentially). A file that
fails any check — or the full validation in :mod:`qwen_meter.catalogue` — is refused whole with
a :class:`~qwen_meter.errors.CatalogueError`, and the installed catalogue stays as it was.

The installed catalogue lives in the user's config folder (``$QWEN_METER_CONFIG_DIR``, else
platformdirs' ``user_config_dir("qwen_meter")``) beside the bundled one, which is never
modified. The previous installed file is kept for :func:`rollback`.
"""

from __future__ import annotations

import functools
import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import CatalogueError

#: Environment variable naming the folder that holds the installed catalogue.
CONFIG_ENV = "QWEN_METER_CONFIG_DIR"
MAX_FILE_BYTES = 4_000_000
MAX_ALIASES = 500
#: values a document may hold once aliases are expanded (the bundled one: ~10,000)
MAX_VALUES = 1_000_000
FETCH_TIMEOUT = 30.0
INSTALLED_NAME = "models.yaml"
PREVIOUS_NAME = "models.previous.yaml"


def config_dir() -> Path:
    """The user's qwen_meter config folder ($QWEN_METER_CONFIG_DIR overrides it)."""
    return _config_dir(os.environ.get(CONFIG_ENV) or None)


@functools.cache
def _config_dir(override: str | None) -> Path:
    # cached: default_catalogue() asks on every cost() call
    if override:
        return Path(override)
    from platformdirs import user_config_dir

    return Path(user_config_dir("qwen_meter"))


def installed_path() -> Path:
    """Where ``catalogue update`` installs a catalogue (it may not exist)."""
    return _installed(config_dir())


@functools.cache
def _installed(folder: Path) -> Path:
    return folder / INSTALLED_NAME


def previous_path() -> Path:
    return config_dir() / PREVIOUS_NAME


def parse_document(data: bytes, file: str) -> Any:
    """Parse catalogue bytes as YAML, refusing oversized, non-UTF-8 and alias-bomb input."""
    import yaml

    if len(data) > MAX_FILE_BYTES:
        raise CatalogueError(f"file is larger than {MAX_FILE_BYTES:,} bytes", file=file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"not UTF-8 text (byte {exc.start})", file=file) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    loader = _loader()
    try:
        # Count aliases on the event stream first: events are linear in the text, while
        # building nested aliases is exponential.
        aliases = 0
        for event in yaml.parse(text, Loader=loader):
            if isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > MAX_ALIASES:
                    raise CatalogueError(f"more than {MAX_ALIASES} YAML aliases: refused "
                                         "(alias expansion)", file=file)
        doc = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"malformed YAML: {exc}", file=file) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a tag's constructor: !!int abc
        raise CatalogueError(f"invalid value: {exc}", file=file) from None
    except RecursionError:
        raise CatalogueError("YAML nested too deeply", file=file) from None
    if _expanded_size(doc) > MAX_VALUES:
        raise CatalogueError(f"YAML aliases expand to more than {MAX_VALUES:,} values: refused "
                             "(alias expansion)", file=file)
    return doc


def _expanded_size(doc: Any) -> int:
    """How many values ``doc`` holds once every alias is expanded, counted without expanding:
    a shared (aliased) object is sized once and reused, so this is linear in the file."""
    sizes: dict[int, int] = {}
    # iterative post-order walk; a cycle (a recursive alias) is treated as too large
    stack: list[tuple[Any, bool]] = [(doc, False)]
    busy: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if not isinstance(node, (dict, list)):
            continue
        if done:
            busy.discard(key)
            children = node.items() if isinstance(node, dict) else ((None, v) for v in node)
            total = 1
            for k, v in children:
                total += _size_of(k, sizes) + _size_of(v, sizes)
                if total > MAX_VALUES:
                    break
            sizes[key] = total
            continue
        if key in sizes:
            continue
        if key in busy:
            return MAX_VALUES + 1
        busy.add(key)
        stack.append((node, True))
        values = node.values() if isinstance(node, dict) else node
        stack.extend((v, False) for v in values if isinstance(v, (dict, list))
                     and id(v) not in sizes)
    return _size_of(doc, sizes)


def _size_of(value: Any, sizes: dict[int, int]) -> int:
    if isinstance(value, (dict, list)):
        return sizes.get(id(value), MAX_VALUES + 1)
    return 1


@functools.cache
def _loader() -> Any:
    """The safe loader (libyaml when built with it) with dates left as text: the catalogue
    validates them itself, so an impossible date names its model and field."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    resolvers = {first: [(tag, regexp) for tag, regexp in entries
                         if tag != "tag:yaml.org,2002:timestamp"]
                 for first, entries in base.yaml_implicit_resolvers.items()}
    return type("CatalogueLoader", (base,), {"yaml_implicit_resolvers": resolvers})


def read_file(path: str | Path) -> Any:
    """Parse one catalogue file (see :func:`parse_document`)."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise CatalogueError(f"file is larger than {MAX_FILE_BYTES:,} bytes", file=str(path))
        data = path.read_bytes()
    except OSError as exc:
        raise CatalogueError(f"cannot read: {exc.strerror or exc}", file=str(path)) from None
    return parse_document(data, str(path))


def fetch(source: str) -> bytes:
    """The bytes of a catalogue named by a path or an http(s) URL (size-capped)."""
    if source.startswith(("http://", "https://")):
        import urllib.error
        import urllib.request

        request = urllib.request.Request(source, headers={"User-Agent": "qwen-meter"})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT) as response:
                data: bytes = response.read(MAX_FILE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise CatalogueError(f"download failed: HTTP {exc.code}", file=source) from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            raise CatalogueError(f"download failed: {reason}", file=source) from None
        if len(data) > MAX_FILE_BYTES:
            raise CatalogueError(f"file is larger than {MAX_FILE_BYTES:,} bytes", file=source)
        return data
    if "://" in source:
        raise CatalogueError("only http(s) URLs or local files", file=source)
    try:
        path = Path(source)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise CatalogueError(f"file is larger than {MAX_FILE_BYTES:,} bytes", file=source)
        return path.read_bytes()
    except OSError as exc:
        raise CatalogueError(f"cannot read: {exc.strerror or exc}", file=source) from None


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".models-", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def install(data: bytes) -> Path:
    """Install already-validated catalogue bytes; the current installed file becomes previous."""
    current = installed_path()
    if current.exists():
        _write_atomic(previous_path(), current.read_bytes())
    _write_atomic(current, data)
    return current


def rollback() -> Path | None:
    """Put the previous installed catalogue back (the replaced one becomes previous).

    After the first install there is no previous file: rolling back removes the installed one,
    so the bundled catalogue is used again (returns None).
    """
    current, previous = installed_path(), previous_path()
    if not previous.exists():
        if current.exists():
            current.unlink()
            return None
        raise CatalogueError("no installed catalogue to roll back", file=str(current))
    old = previous.read_bytes()
    if current.exists():
        _write_atomic(previous, current.read_bytes())
    else:
        previous.unlink()
    _write_atomic(current, old)
    return current
