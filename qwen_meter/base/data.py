"""Where the bundled data files live, installed or in a source checkout."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from .errors import CatalogueError, UnknownFamily

T = TypeVar("T")

_PACKAGE_DIR = Path(__file__).resolve().parent.parent  # qwen_meter/, this file is in base/


@cache
def data_dir() -> Path:
    """The folder holding ``models.yaml``, ``tokenizers.yaml`` and ``templates.yaml``.

    A wheel carries ``data/`` inside the package; a source checkout (or an editable
    install) keeps it beside the package.
    """
    for candidate in (_PACKAGE_DIR / "data", _PACKAGE_DIR.parent / "data"):
        if (candidate / "tokenizers.yaml").is_file():
            return candidate
    raise CatalogueError("qwen_meter's data folder is missing from this installation")


#: Limits for YAML read from outside the package (overrides, downloads, gateway configs).
MAX_FILE_BYTES = 4_000_000
#: Aliases are counted on the event stream before anything is built: nested aliases expand
#: exponentially ("alias bombs"), events are linear in the text.
MAX_ALIASES = 500
#: values a document may hold once its aliases are expanded (the bundled catalogue: ~10,000)
MAX_VALUES = 1_000_000


def load_yaml(path: str | Path) -> Any:
    """Parse one YAML file (see :func:`parse_yaml`); the package's own files are trusted."""
    where = str(path)
    try:
        if Path(path).stat().st_size > MAX_FILE_BYTES:
            raise CatalogueError(f"file is larger than {MAX_FILE_BYTES:,} bytes", file=where)
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CatalogueError(f"cannot read: {exc.strerror or exc}", file=where) from None
    return parse_yaml(data, where, trusted=_shipped(Path(path)))


def parse_yaml(data: bytes, where: str, *, trusted: bool = False) -> Any:
    """YAML bytes as data, every failure a :class:`CatalogueError` naming ``where``.

    The text must be UTF-8 (a byte-order mark is fine). Untrusted input is also refused when
    it is over :data:`MAX_FILE_BYTES`, has more than :data:`MAX_ALIASES` aliases, or expands
    to more than :data:`MAX_VALUES` values (recursive aliases included). Dates stay text:
    the catalogue validates them itself, so an impossible date names its model and field.
    """
    import yaml

    if not trusted and len(data) > MAX_FILE_BYTES:
        raise CatalogueError(f"file is larger than {MAX_FILE_BYTES:,} bytes", file=where)
    text = _decode(data, where)
    loader = _loader()
    try:
        if not trusted:
            aliases = sum(isinstance(event, yaml.AliasEvent)
                          for event in yaml.parse(text, Loader=loader))
            if aliases > MAX_ALIASES:
                raise CatalogueError(f"more than {MAX_ALIASES} YAML aliases: refused "
                                     "(alias expansion)", file=where)
        doc = yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise CatalogueError(f"malformed YAML{at}: {getattr(exc, 'problem', None) or exc}",
                             file=where) from None
    except (ValueError, TypeError, OverflowError) as exc:  # a tag's constructor: !!int abc
        raise CatalogueError(f"invalid value: {exc}", file=where) from None
    except RecursionError:
        raise CatalogueError("YAML nested too deeply", file=where) from None
    if not trusted and _expanded_size(doc) > MAX_VALUES:
        raise CatalogueError(f"YAML aliases expand to more than {MAX_VALUES:,} values: refused "
                             "(alias expansion)", file=where)
    return doc


def _shipped(path: Path) -> bool:
    try:
        return path.resolve().parent == data_dir()
    except (OSError, CatalogueError):
        return False


def _decode(raw: bytes, where: str) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(raw) > 1 and b"\x00" in raw[:4]):
        raise CatalogueError("the file is UTF-16 or UTF-32; save it as UTF-8", file=where)
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CatalogueError(f"not UTF-8 (byte {exc.start}); save it as UTF-8",
                             file=where) from None


@cache
def _loader() -> Any:
    """The safe loader (libyaml when built with it) with dates left as text."""
    import yaml

    base = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    resolvers = {first: [(tag, regexp) for tag, regexp in entries
                         if tag != "tag:yaml.org,2002:timestamp"]
                 for first, entries in base.yaml_implicit_resolvers.items()}
    return type("DataLoader", (base,), {"yaml_implicit_resolvers": resolvers})


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


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """``table[name]``, or :class:`UnknownFamily` listing what ``kind`` names exist."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownFamily(kind, name, sorted(table)) from None
