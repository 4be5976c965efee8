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


def load_yaml(path: Path) -> Any:
    """Parse one YAML file, turning parser errors into a :class:`CatalogueError`."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogueError(f"cannot read: {exc.strerror}", file=str(path)) from exc
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when built with it
    try:
        return yaml.load(text, Loader=loader)
    except yaml.YAMLError as exc:
        raise CatalogueError(f"malformed YAML: {exc}", file=str(path)) from exc


def lookup(table: Mapping[str, T], name: str, kind: str) -> T:
    """``table[name]``, or :class:`UnknownFamily` listing what ``kind`` names exist."""
    try:
        return table[name]
    except (KeyError, TypeError):
        raise UnknownFamily(kind, name, sorted(table)) from None
