"""Where the bundled data files live, installed or in a source checkout."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from .errors import CatalogueError, UnknownFamily

T = TypeVar("T")

_PACKAGE_DIR = Path(__file__).resolve().parent


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


#: Most nodes a file may expand to once its aliases are followed. The shipped catalogue is
#: a few thousand; an "alias bomb" (each anchor repeating the previous one ten times) is
#: billions, and would hang whatever walks the parsed data.
MAX_NODES = 200_000


def load_yaml(path: Path) -> Any:
    """Parse one YAML file, turning every failure into a :class:`CatalogueError` naming it.

    The file must be UTF-8 (a UTF-8 byte-order mark is fine); UTF-16/32 and other encodings,
    values the YAML constructors reject (``2024-13-45`` as a date), recursive aliases and
    alias bombs are refused before any of the data is used.
    """
    import yaml

    where = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise CatalogueError(f"cannot read: {exc.strerror}", file=where) from exc
    text = _decode(raw, where)
    loader_class = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
    loader = loader_class(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if not _shipped(path):  # our own files are known to be small; skip the walk (~40 ms)
            _check_size(node, where)
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"malformed YAML: {exc}", file=where) from exc
    except (ValueError, TypeError, OverflowError) as exc:  # e.g. a date that does not exist
        raise CatalogueError(f"invalid value: {exc}", file=where) from exc
    except RecursionError:
        raise CatalogueError("nested too deeply", file=where) from None
    finally:
        loader.dispose()


def _shipped(path: Path) -> bool:
    try:
        return Path(path).resolve().parent == data_dir()
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


def _check_size(root: Any, where: str) -> None:
    """Refuse a node graph that is cyclic or expands to more than :data:`MAX_NODES`."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: Any) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise CatalogueError("a recursive alias (an anchor that contains itself)",
                                 file=where)
        active.add(key)
        total = 1
        value = node.value
        if isinstance(value, list):
            for item in value:
                children = item if isinstance(item, tuple) else (item,)  # mapping pairs
                for child in children:
                    total += size(child)
                    if total > MAX_NODES:
                        raise CatalogueError(f"expands to more than {MAX_NODES} values "
                                             "through its aliases (an alias bomb?)", file=where)
        active.discard(key)
        sizes[key] = total
        return total

    size(root)


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """``table[name]``, or :class:`UnknownFamily` listing what ``kind`` names exist."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownFamily(kind, name, sorted(table)) from None
