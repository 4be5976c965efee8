"""The usage record: one versioned :class:`UsageRecord` per call, and the log's errors."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ..base.errors import QwenMeterError, QwenMeterWarning
from . import jsonline
from .record_checks import check_fields
from .redaction import redact

SCHEMA_VERSION = 1


@dataclass(frozen=True)
class UsageRecord:
    """What one call asked for, what it used, what it cost (schema :data:`SCHEMA_VERSION`)."""

    model: str
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    time: str = field(default_factory=lambda: dt.datetime.now(dt.timezone.utc).isoformat())
    version: int = SCHEMA_VERSION
    request_id: str | None = None
    served_model: str | None = None
    region: str | None = None
    endpoint: str = "chat"
    stream: bool = False
    status: str = "ok"
    error: str | None = None
    error_kind: str | None = None
    http_status: int | None = None
    attempts: int = 1
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    image_tokens: int = 0
    audio_tokens: int = 0
    usage_estimated: bool = False
    estimated_prompt_tokens: int | None = None
    estimate_exact: bool | None = None
    calibration: int = 0
    prompt_diff: int | None = None
    estimated_cost_low: str | None = None
    estimated_cost_high: str | None = None
    cost: str | None = None
    currency: str | None = None
    unpriced: str | None = None
    latency_ms: float | None = None
    tags: tuple[str, ...] = ()
    user: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    #: what went wrong while settling (a store down, an unpriced cost ...); the call still counts
    warnings: tuple[str, ...] = ()
    #: a budget or limiter update did not reach its store: totals there may be off
    degraded: bool = False

    def to_dict(self) -> dict[str, Any]:
        """The record as plain JSON values (tuples as lists), as the JSONL log writes it."""
        data = dict(self.__dict__)  # the fields, in their order (set by __init__)
        if len(data) != len(_FIELD_NAMES):  # something else was set on it: fields only
            data = {name: getattr(self, name) for name in _FIELD_NAMES}
        if self.error:  # server messages can echo a key or a header back
            data["error"] = redact(self.error)
        data["tags"] = list(self.tags)
        data["warnings"] = list(self.warnings)
        data["metadata"] = dict(self.metadata)
        return data

    def to_json(self) -> str:
        return jsonline.text(self.to_dict())

    def to_line(self) -> bytes:
        """The record as the JSONL log writes it: one line, UTF-8, with its newline."""
        return jsonline.line(self.to_dict())

    @classmethod
    def _of_fields(cls, values: dict[str, Any]) -> UsageRecord:
        """A record from every field's value, given in field order (the meter's settlement:
        one per call). A frozen dataclass's ``__init__`` sets each of the forty fields
        through ``object.__setattr__``, which costs more than building the whole record
        line; the dict is adopted as is. tests/test_pipeline.py checks the meter's records
        equal ones built through ``__init__``."""
        record = object.__new__(cls)
        object.__setattr__(record, "__dict__", values)
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageRecord:
        """A record from its JSON form (unknown keys of newer versions are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        check_fields(values)  # InvalidField (a ValueError) names the field
        values["tags"] = tuple(values.get("tags") or ())
        values["warnings"] = tuple(values.get("warnings") or ())
        return cls(**values)


_FIELD_NAMES = tuple(f.name for f in fields(UsageRecord))


class UsageLogError(QwenMeterError):
    """The usage log cannot be written or read."""


class TornLineWarning(QwenMeterWarning, UserWarning):
    """A JSONL log line that a killed writer left incomplete; it was skipped."""

