"""qwen-long file references (``fileid://...`` in a system message) and their token counts.

The server replaces each reference with the file's extracted text, so the literal string says
nothing about the bill. A count is exact only for files whose token count is known here:
registered by the caller (e.g. from an earlier call's usage) or counted from the local file
(:func:`qwen_meter.count_file`).
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping

from ..base.errors import InvalidRequest

#: A file reference as qwen-long takes it; several may share one message, comma-separated.
FILE_REFERENCE = re.compile(r"fileid://([A-Za-z0-9_\-.]+)")

_lock = threading.Lock()
_registry: dict[str, int] = {}


def register_file(file_id: str, tokens: int) -> None:
    """Remember that ``file_id`` (with or without ``fileid://``) is ``tokens`` tokens long."""
    if not isinstance(file_id, str) or not file_id:
        raise InvalidRequest("must be a non-empty string", field="file_id")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 0:
        raise InvalidRequest(f"must be a whole number >= 0, got {tokens!r}", field="tokens")
    key = file_id.removeprefix("fileid://")
    with _lock:
        _registry[key] = tokens


def forget_files() -> None:
    """Drop every registered file count."""
    with _lock:
        _registry.clear()


def registered_files() -> Mapping[str, int]:
    """A copy of the registered file counts."""
    with _lock:
        return dict(_registry)


def split_references(text: str) -> tuple[str, list[str]]:
    """(the text without its file references and their separators, the referenced ids)."""
    ids = FILE_REFERENCE.findall(text)
    if not ids:
        return text, []
    rest = FILE_REFERENCE.sub("", text)
    # Only commas and whitespace between references are separators, not content.
    return ("" if not rest.strip(", \n\t") else rest), ids


def file_tokens(file_id: str) -> int | None:
    """The registered token count of one file, if any."""
    with _lock:
        return _registry.get(file_id)
