"""The types and ranges of a usage record's fields, checked when a record is read back.

A log is a file anyone can edit, append to or corrupt: a line with ``"cost": "-5"``,
``"prompt_tokens": "123"`` or ``"tags": "a"`` must not be summed as if it were a record the
meter wrote. :func:`check_fields` says which field is wrong and why; the readers (the JSONL and
SQLite logs, ``read_usage``) skip such a line with an :class:`InvalidRecordWarning` naming the
file, the line and the field, as the report skips and names it — the same rule in both.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any, TypeGuard, TypeVar

from ..base.errors import QwenMeterWarning

R = TypeVar("R")


class InvalidRecordWarning(QwenMeterWarning, UserWarning):
    """A log line that is whole JSON but not a valid usage record; it was skipped."""


_COUNTS = ("prompt_tokens", "completion_tokens", "total_tokens", "cached_tokens",
           "reasoning_tokens", "image_tokens", "audio_tokens", "attempts")
_OPTIONAL_COUNTS = ("estimated_prompt_tokens", "http_status")
_SIGNED = ("calibration", "version")
_OPTIONAL_SIGNED = ("prompt_diff",)
_FLAGS = ("stream", "usage_estimated", "degraded")
_OPTIONAL_FLAGS = ("estimate_exact",)
_TEXTS = ("id", "time", "endpoint", "status")
_OPTIONAL_TEXTS = ("request_id", "served_model", "region", "error", "error_kind", "currency",
                   "unpriced", "user")
_MONEY = ("cost", "estimated_cost_low", "estimated_cost_high")
_LISTS = ("tags", "warnings")
_MAX_COUNT = 10**15  # above any real call; a larger number is a corrupt line


class InvalidField(ValueError):
    """One field of a record is of the wrong type or out of range."""

    def __init__(self, name: str, problem: str, value: Any) -> None:
        shown = repr(value)
        super().__init__(f"field {name!r} {problem}, got {shown[:60]}"
                         + ("..." if len(shown) > 60 else ""))
        self.field = name


def _int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def check_fields(values: Mapping[str, Any]) -> None:
    """Raise :class:`InvalidField` for the first field of ``values`` (a record's known keys)
    that is not what the meter writes there."""
    model = values.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidField("model", "must be a non-empty string", model)
    # A field left out takes the record's default; one given must have the right type.
    for name in _COUNTS + _OPTIONAL_COUNTS:
        value = values.get(name)
        if name not in values or (value is None and name in _OPTIONAL_COUNTS):
            continue
        if not _int(value) or not 0 <= value <= _MAX_COUNT:
            raise InvalidField(name, "must be a whole number >= 0", value)
    for name in _SIGNED + _OPTIONAL_SIGNED:
        value = values.get(name)
        if name not in values or (value is None and name in _OPTIONAL_SIGNED):
            continue
        if not _int(value) or not -_MAX_COUNT <= value <= _MAX_COUNT:
            raise InvalidField(name, "must be a whole number", value)
    for name in _FLAGS + _OPTIONAL_FLAGS:
        value = values.get(name)
        if name not in values or (value is None and name in _OPTIONAL_FLAGS):
            continue
        if not isinstance(value, bool):
            raise InvalidField(name, "must be true or false", value)
    for name in _TEXTS + _OPTIONAL_TEXTS:
        value = values.get(name)
        if name not in values or (value is None and name in _OPTIONAL_TEXTS):
            continue
        if not isinstance(value, str):
            raise InvalidField(name, "must be a string", value)
    for name in _MONEY:
        value = values.get(name)
        if value is None:
            continue
        try:
            amount = Decimal(value) if isinstance(value, str) else \
                Decimal(str(value)) if _int(value) or isinstance(value, float) else None
        except (InvalidOperation, ValueError):
            amount = None
        if amount is None or not amount.is_finite() or amount < 0:
            raise InvalidField(name, "must be a decimal amount >= 0", value)
    latency = values.get("latency_ms")
    if latency is not None and not ((_int(latency) or isinstance(latency, float))
                                    and math.isfinite(latency) and latency >= 0):
        raise InvalidField("latency_ms", "must be a number >= 0", latency)
    for name in _LISTS:
        value = values.get(name)
        if value is not None and not (isinstance(value, (list, tuple))
                                      and all(isinstance(v, str) for v in value)):
            raise InvalidField(name, "must be a list of strings", value)
    metadata = values.get("metadata")
    if metadata is not None and not (isinstance(metadata, Mapping)
                                     and all(isinstance(k, str) for k in metadata)):
        raise InvalidField("metadata", "must be an object", metadata)


class Unreadable(str):
    """Why a line or row holds no JSON a record could be read from."""


def json_or_unreadable(text: Any) -> Any:
    """A stored record parsed, or :class:`Unreadable` saying why it is not JSON."""
    try:
        return json.loads(text)
    except (ValueError, TypeError):
        return Unreadable(f"not JSON: {str(text)[:40]!r}")
    except RecursionError:
        return Unreadable("nested too deeply to be a record")


def record_or_warn(data: Any, where: str, build: Callable[[Mapping[str, Any]], R]) -> R | None:
    """``build(data)`` (a record), or None after an :class:`InvalidRecordWarning` naming
    ``where`` and the field."""
    try:
        if isinstance(data, Unreadable) or not isinstance(data, Mapping):
            raise TypeError(data if isinstance(data, Unreadable) else "not a JSON object")
        return build(data)
    except (ValueError, TypeError) as exc:
        warnings.warn(f"{where}: not a usage record, skipped: {exc}", InvalidRecordWarning,
                      stacklevel=3)
        return None
