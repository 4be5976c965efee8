"""The usage log: one versioned :class:`UsageRecord` per call, in JSONL (default) or SQLite.

JSONL records are written with one ``write(2)`` on a file opened with ``O_APPEND``: a line is in
the file whole or not at all, lines from several threads and processes never interleave, and a
record whose ``append`` returned survives the process being killed. ``fsync=True`` also makes
it survive a power cut. Readers skip (and count) a trailing line that is not complete.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import QwenMeterError

SCHEMA_VERSION = 1

_SECRET = re.compile(r"(sk-[A-Za-z0-9_\-]{2})[A-Za-z0-9_\-]+|(Bearer\s+)\S+", re.IGNORECASE)


def redact(text: str) -> str:
    """``text`` with API keys and bearer tokens masked."""
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2)) + "***", text)


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
        data = {name: getattr(self, name) for name in _FIELD_NAMES}
        data["tags"] = list(self.tags)
        data["warnings"] = list(self.warnings)
        data["metadata"] = dict(self.metadata)
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> UsageRecord:
        """A record from its JSON form (unknown keys of newer versions are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["tags"] = tuple(values.get("tags") or ())
        values["warnings"] = tuple(values.get("warnings") or ())
        return cls(**values)


_FIELD_NAMES = tuple(f.name for f in fields(UsageRecord))


class UsageLogError(QwenMeterError):
    """The usage log cannot be written or read."""


class UsageLog:
    """Where records go; see :class:`JsonlLog` and :class:`SQLiteLog`."""

    def append(self, record: UsageRecord) -> None:
        raise NotImplementedError

    def __iter__(self) -> Iterator[UsageRecord]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""


class JsonlLog(UsageLog):
    """Append-only JSON lines, one per call."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageLogError(f"cannot open usage log {self.path}: {exc.strerror}") from exc

    def append(self, record: UsageRecord) -> None:
        line = (record.to_json() + "\n").encode("utf-8")
        try:
            written = os.write(self._fd, line)
            if written != len(line):  # a full disk; the partial line will be skipped on read
                raise UsageLogError(f"short write to {self.path} ({written} of {len(line)})")
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise UsageLogError(f"cannot write usage log {self.path}: {exc.strerror}") from exc

    def __iter__(self) -> Iterator[UsageRecord]:
        return iter(read_jsonl(self.path))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def read_jsonl(path: str | os.PathLike[str]) -> list[UsageRecord]:
    """All complete records of a JSONL log (a torn last line is skipped)."""
    records = []
    with open(path, "rb") as handle:
        for line in handle:
            if not line.endswith(b"\n"):
                break  # the writer was stopped mid-line (only possible on a full disk)
            try:
                records.append(UsageRecord.from_dict(json.loads(line)))
            except (ValueError, TypeError) as exc:
                raise UsageLogError(f"{path}: unreadable record: {exc}") from exc
    return records


class SQLiteLog(UsageLog):
    """Records in an SQLite table (WAL mode; one short transaction per record)."""

    _COLUMNS = ("id", "time", "model", "status", "prompt_tokens", "completion_tokens", "cost",
                "currency", "user")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS usage (id TEXT PRIMARY KEY, "
                             "time TEXT, model TEXT, status TEXT, prompt_tokens INTEGER, "
                             "completion_tokens INTEGER, cost TEXT, currency TEXT, user TEXT, "
                             "version INTEGER, record TEXT NOT NULL)")
        except sqlite3.Error as exc:
            raise UsageLogError(f"cannot open usage log {self.path}: {exc}") from exc

    def append(self, record: UsageRecord) -> None:
        values = [getattr(record, c) for c in self._COLUMNS]
        try:
            with self._lock:
                self._db.execute("INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                 (*values, record.version, record.to_json()))
        except sqlite3.Error as exc:
            raise UsageLogError(f"cannot write usage log {self.path}: {exc}") from exc

    def __iter__(self) -> Iterator[UsageRecord]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM usage ORDER BY time, id").fetchall()
        return (UsageRecord.from_dict(json.loads(row[0])) for row in rows)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_log(target: str | os.PathLike[str] | UsageLog | None) -> UsageLog | None:
    """A log from a path (``.db`` / ``.sqlite`` → SQLite, anything else → JSONL)."""
    if target is None or isinstance(target, UsageLog):
        return target
    path = os.fspath(target)
    if path.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteLog(path)
    return JsonlLog(path)


def read_usage(source: str | os.PathLike[str] | UsageLog | Sequence[UsageRecord]
               ) -> list[UsageRecord]:
    """All records from a JSONL path, an SQLite path, a log object or a list."""
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if path.endswith((".db", ".sqlite", ".sqlite3")):
            log = SQLiteLog(path)
            try:
                return list(log)
            finally:
                log.close()
        return read_jsonl(path)
    return list(source)
