"""Tokenizer families: vocabulary, pre-tokenizer pattern and added tokens of each Qwen generation.

The table lives in ``data/tokenizers.yaml``; this module turns it into frozen records.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from types import MappingProxyType
from typing import Any

from ..base.data import data_dir, load_yaml, lookup
from ..base.errors import CatalogueError
from .tables import loaded_table


@dataclass(frozen=True)
class TokenizerFamily:
    """One vocabulary: where its BPE ranks come from and which tokens are added on top."""

    name: str
    description: str
    ranks_package: str
    ranks_resource: str
    ranks_size: int
    pattern: str
    added_tokens: Mapping[str, int]

    def token_id(self, token: str) -> int:
        """The id of one added token, e.g. ``"<|im_start|>"``."""
        return self.added_tokens[token]


def _require(entry: Mapping[str, Any], key: str, kind: type, *, file: str, model: str) -> Any:
    value = entry.get(key)
    if not isinstance(value, kind):
        raise CatalogueError(f"expected {kind.__name__}", file=file, model=model, field=key)
    return value


@cache
def _families() -> Mapping[str, TokenizerFamily]:
    path = data_dir() / "tokenizers.yaml"
    file = str(path)
    doc = loaded_table("tokenizers")
    if doc is None:
        doc = load_yaml(path)
    if not isinstance(doc, dict) or not isinstance(doc.get("families"), dict):
        raise CatalogueError("expected a mapping with 'families'", file=file)
    patterns = doc.get("patterns") or {}
    out: dict[str, TokenizerFamily] = {}
    for name, entry in doc["families"].items():
        ranks = _require(entry, "ranks", dict, file=file, model=name)
        pattern_name = _require(entry, "pattern", str, file=file, model=name)
        if pattern_name not in patterns:
            raise CatalogueError("unknown pattern", file=file, model=name, field="pattern")
        start = _require(entry, "added_tokens_start", int, file=file, model=name)
        added = _require(entry, "added_tokens", list, file=file, model=name)
        if len(set(added)) != len(added):
            raise CatalogueError("duplicate added token", file=file, model=name,
                                 field="added_tokens")
        out[name] = TokenizerFamily(
            name=name,
            description=str(entry.get("description", "")),
            ranks_package=_require(ranks, "package", str, file=file, model=name),
            ranks_resource=_require(ranks, "resource", str, file=file, model=name),
            ranks_size=_require(ranks, "size", int, file=file, model=name),
            pattern=patterns[pattern_name],
            added_tokens=MappingProxyType({tok: start + i for i, tok in enumerate(added)}),
        )
    return MappingProxyType(out)


def get_family(name: str) -> TokenizerFamily:
    """Look up a tokenizer family by name (``"qwen2.5"``, ``"qwen3"``, ``"qwen3.5"``)."""
    return lookup(_families(), name, "tokenizer family")


def family_names() -> list[str]:
    """All known tokenizer family names."""
    return sorted(_families())
