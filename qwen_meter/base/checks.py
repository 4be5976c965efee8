"""Checks shared by every public entry point: type and range of each argument, once.

Each helper returns the value (normalised where a check implies it, e.g. a date) or raises
:class:`~qwen_meter.errors.InvalidArgumentType` (wrong type, also a ``TypeError``) or
:class:`~qwen_meter.errors.InvalidArgument` (wrong value, also a ``ValueError``), naming the
function and the argument. Strings are never read as booleans: ``"no"`` is truthy in Python
but not a switch anyone meant to turn on.
"""

from __future__ import annotations

import datetime as dt
import math
import os
from collections.abc import Callable
from typing import Any, TypeVar

from .errors import InvalidArgument, InvalidArgumentType

T = TypeVar("T")


def _kind(value: Any) -> str:
    return type(value).__name__


def type_error(where: str, expected: str, value: Any) -> InvalidArgumentType:
    """The error for ``value`` not being ``expected``."""
    return InvalidArgumentType(f"expected {expected}, got {_kind(value)} {_short(value)}",
                               where=where)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def instance(value: Any, cls: type[T] | tuple[type, ...], where: str, expected: str) -> T:
    """``value`` if it is an instance of ``cls``."""
    if not isinstance(value, cls):
        raise type_error(where, expected, value)
    return value  # type: ignore[return-value]


def optional_instance(value: Any, cls: type[T] | tuple[type, ...], where: str,
                      expected: str) -> T | None:
    """``value`` if None or an instance of ``cls``."""
    return None if value is None else instance(value, cls, where, expected)


def text(value: Any, where: str, *, empty: bool = False) -> str:
    """A string (non-blank unless ``empty``)."""
    if not isinstance(value, str):
        raise type_error(where, "a string", value)
    if not empty and not value.strip():
        raise InvalidArgument("cannot be empty", where=where)
    return value


def optional_text(value: Any, where: str) -> str | None:
    """None or a non-blank string (``""`` is an error, not "use the default")."""
    return None if value is None else text(value, where)


def model_name(value: Any, where: str) -> Any:
    """A model name; None means the default model and is returned as is."""
    return None if value is None else text(value, where)


def flag(value: Any, where: str) -> bool:
    """A real bool (no truthy strings or numbers)."""
    if not isinstance(value, bool):
        raise type_error(where, "True or False", value)
    return value


def optional_flag(value: Any, where: str) -> bool | None:
    """None (the default applies) or a real bool."""
    return None if value is None else flag(value, where)


def whole(value: Any, where: str, *, minimum: int = 0) -> int:
    """An int (not a bool) >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise type_error(where, "a whole number", value)
    if value < minimum:
        raise InvalidArgument(f"must be >= {minimum}, got {value}", where=where)
    return value


def optional_whole(value: Any, where: str, *, minimum: int = 0) -> int | None:
    return None if value is None else whole(value, where, minimum=minimum)


def number(value: Any, where: str, *, positive: bool = False, minimum: float = 0.0,
           finite: bool = True) -> float:
    """A real number (int or float, not a bool or a string), not NaN, >= ``minimum``
    (> 0 with ``positive``); infinite only when ``finite`` is False."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise type_error(where, "a number", value)
    try:
        as_float = float(value)
    except OverflowError:  # an int too large for a float: treat as infinite
        as_float = math.inf if value > 0 else -math.inf
    if math.isnan(as_float):
        raise InvalidArgument("cannot be NaN", where=where)
    if finite and math.isinf(as_float):
        raise InvalidArgument("must be finite", where=where)
    if positive and as_float <= 0:
        raise InvalidArgument(f"must be > 0, got {value!r}", where=where)
    if as_float < minimum:
        raise InvalidArgument(f"must be >= {minimum:g}, got {value!r}", where=where)
    return as_float


def timeout(value: Any, where: str) -> float | None:
    """None (wait as long as it takes) or seconds >= 0; NaN is refused (it would compare
    false against every deadline and wait forever); ``inf`` means no bound, like None."""
    if value is None:
        return None
    seconds = number(value, where, finite=False)
    return None if math.isinf(seconds) else seconds


def date(value: Any, where: str) -> dt.date | None:
    """None, a date, a datetime (its date; an aware one in its own zone) or an ISO 8601
    string (``2024-01-01``, ``2024-01-01T08:00:00+08:00``, a trailing ``Z``)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        raw = value.strip()
        try:
            return dt.date.fromisoformat(raw)
        except ValueError:
            pass
        try:
            return dt.datetime.fromisoformat(raw[:-1] + "+00:00" if raw.endswith(("Z", "z"))
                                             else raw).date()
        except ValueError:
            raise InvalidArgument(f"not an ISO date (YYYY-MM-DD): {value!r}",
                                  where=where) from None
    raise type_error(where, "a date, a datetime or an ISO date string", value)


def path(value: Any, where: str) -> str | None:
    """None or a filesystem path (str or os.PathLike), as a string."""
    if value is None:
        return None
    if not isinstance(value, (str, os.PathLike)):
        raise type_error(where, "a path", value)
    try:
        result = os.fspath(value)
    except TypeError:
        raise type_error(where, "a path", value) from None
    if not isinstance(result, str):
        raise type_error(where, "a text path", value)
    if not result or "\x00" in result:
        raise InvalidArgument(f"not a usable path: {value!r}", where=where)
    return result


def choice(value: Any, options: tuple[Any, ...], where: str) -> Any:
    """One of ``options`` (compared by equality, after a hashability-free check)."""
    if not any(value is o or (type(value) is type(o) and value == o) for o in options):
        shown = ", ".join(repr(o) for o in options)
        raise InvalidArgument(f"must be one of {shown}, got {_short(value)}", where=where)
    return value


def callable_(value: Any, where: str, *, optional: bool = False) -> Callable[..., Any] | None:
    """A callable (or None with ``optional``)."""
    if value is None and optional:
        return None
    if not callable(value):
        raise type_error(where, "a callable", value)
    return value  # type: ignore[no-any-return]


#: Above any vocabulary (Qwen's is ~152k); larger ids would overflow the tokenizer's C types.
MAX_TOKEN_ID = 2**31 - 1


def token_ids(value: Any, where: str) -> list[int]:
    """A sequence of token ids (whole numbers >= 0), not a string or a mapping."""
    from collections.abc import Mapping, Sequence

    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise type_error(where, "a sequence of token ids", value)
    for n, item in enumerate(value):
        if whole(item, f"{where}[{n}]") > MAX_TOKEN_ID:
            raise InvalidArgument(f"{item} is not a token id", where=f"{where}[{n}]")
    return list(value)


def sequence(value: Any, where: str) -> None:
    """A list or tuple (or other sequence), not a string, bytes or a mapping."""
    from collections.abc import Iterable, Mapping

    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Iterable):
        raise type_error(where, "a list", value)


#: Deepest JSON nesting accepted in tool definitions and arguments (deeper is surely a cycle
#: or a mistake, and would exhaust the recursion limit in json.dumps).
MAX_JSON_DEPTH = 64


def json_problem(value: Any, at: str = "") -> str | None:
    """Where and why ``value`` cannot be sent as JSON (None when it can): sets, bytes,
    dates, non-string keys, NaN, cycles — what ``json.dumps`` would trip over deep inside."""
    stack: list[tuple[Any, str, int]] = [(value, at, 0)]
    while stack:
        item, where, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            shown = where if len(where) <= 60 else where[:57] + "..."
            return f"{shown}: nested more than {MAX_JSON_DEPTH} deep (a cycle?)"
        if item is None or isinstance(item, (str, bool, int)):
            continue
        if isinstance(item, float):
            if not math.isfinite(item):
                return f"{where or 'value'}: {item!r} is not valid JSON"
            continue
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str):
                    return f"{where or 'value'}: key {_short(key)} is not a string"
                stack.append((child, f"{where}.{key}" if where else key, depth + 1))
            continue
        if isinstance(item, (list, tuple)):
            stack.extend((child, f"{where}[{n}]", depth + 1) for n, child in enumerate(item))
            continue
        return f"{where or 'value'}: a {_kind(item)} is not JSON (use str, number, list, dict)"
    return None
