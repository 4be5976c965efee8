"""How every usage-log line is encoded: compact JSON, UTF-8 as is (no ``\\uXXXX`` for
non-ASCII), keys in the order given.

The standard library's encoder (``ensure_ascii=False``, separators ``,`` and ``:``) defines the
bytes. When the optional ``orjson`` package is installed (the ``fast`` extra) it encodes the
lines instead — about a tenth of the time for a record of some forty fields, two lines per call
— but only for values whose bytes it is known to write identically: exact ``dict`` / ``list``
/ ``tuple`` containers with ``str`` keys, and ``str``, ``int``, ``bool``, ``None`` and finite
floats in ``[1e-4, 1e16)`` or zero (outside that range the two spell exponents differently:
``1e-05`` against ``0.00001``). Anything else — a float out of that range, a ``Decimal``, a
subclass, an integer beyond 64 bits — goes through the standard library, so a line's bytes do
not depend on whether ``orjson`` is installed (tests/test_log.py compares the two).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

_STDLIB = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

_fast: Callable[..., bytes] | None
try:
    import orjson
except ImportError:  # the standard library writes every line
    _fast = None
    _NEWLINE = 0
else:
    _fast = orjson.dumps
    _NEWLINE = orjson.OPT_APPEND_NEWLINE

_SCALARS = frozenset({str, int, bool, type(None)})
#: containers written the same way by both when empty
_EMPTY_OK = frozenset({dict, list, tuple})


def _same_bytes(value: Any) -> bool:
    """Whether orjson writes ``value`` exactly as the standard library does (see above)."""
    kind = type(value)
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                return False
            # Most values are scalars or empty containers: no call for those.
            item_kind = type(item)
            if item_kind in _SCALARS or (item_kind in _EMPTY_OK and not item):
                continue
            if not _same_bytes(item):
                return False
        return True
    if kind is list or kind is tuple:
        return all(type(item) in _SCALARS or _same_bytes(item) for item in value)
    if kind is float:  # NaN and the infinities fail both comparisons
        return bool(value == 0 or 1e-4 <= abs(value) < 1e16)
    return kind in _SCALARS


def line(value: Any) -> bytes:
    """``value`` as one JSONL line (UTF-8, ending in a newline)."""
    if _fast is not None and _same_bytes(value):
        try:
            return _fast(value, option=_NEWLINE)
        except TypeError:  # an int beyond 64 bits, a lone surrogate: the stdlib decides
            pass
    return (_STDLIB(value) + "\n").encode("utf-8")


def text(value: Any) -> str:
    """``value`` as JSON text (the same bytes as :func:`line`, without the newline)."""
    if _fast is not None and _same_bytes(value):
        try:
            return _fast(value).decode("utf-8")
        except TypeError:
            pass
    return _STDLIB(value)


def using_orjson() -> bool:
    """Whether ``orjson`` encodes the lines it can (for the benchmarks' reports)."""
    return _fast is not None
