"""The usage log: one versioned :class:`UsageRecord` per call, in JSONL (default) or SQLite.

JSONL records are written with one ``write(2)`` of the whole line on a file opened with
``O_APPEND``: lines from several threads and processes never interleave, and a record whose
``append`` returned survives the process being killed. ``fsync=True`` also makes it survive a
power cut. A writer killed in the middle of a large write can still leave a line without its
newline; the next append sees that torn tail and starts on a new line, so the fragment never
swallows a good record. Readers skip each torn line and name it (:class:`TornLineWarning`).

:func:`redact` masks secrets in anything that reaches a record: keys by value (those
registered with :func:`register_secret` and ``$DASHSCOPE_API_KEY`` / ``$OPENAI_API_KEY``) and
by shape (``sk-...``, ``Authorization:`` values, bearer tokens, ``api_key=...``, JWTs).
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
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..base.errors import QwenMeterError, QwenMeterWarning

SCHEMA_VERSION = 1

#: Environment variables whose values are API keys (masked wherever they appear).
KEY_ENV = ("DASHSCOPE_API_KEY", "OPENAI_API_KEY")
MASK = "***"

# By shape. Each pattern keeps its first group (the label) and masks the rest.
_SHAPES = re.compile(
    r"((?:proxy-)?authorization[\"']?\s*[:=]\s*[\"']?(?:(?:bearer|basic|token|apikey)\s+)?)"
    r"[^\s\"',;]+"
    r"|(bearer\s+)[A-Za-z0-9._~+/=-]+"
    r"|((?:x-)?(?:dashscope-)?api[_-]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"
    r"|((?:access[_-]?token|secret|password)[\"']?\s*[:=]\s*[\"']?)[^\s\"',;&]+"
    r"|(?<![A-Za-z0-9])(sk-[A-Za-z0-9_\-]{2})[A-Za-z0-9_\-]+"
    r"|()\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*",
    re.IGNORECASE)
_registered: set[str] = set()
_registered_lock = threading.Lock()
#: Values shorter than this are not masked by value (they would mask ordinary words).
MIN_SECRET_LENGTH = 8


def register_secret(value: Any) -> None:
    """Mask ``value`` (an API key the meter's client is configured with) in every record,
    error and log message from now on. Short or non-string values are ignored."""
    if isinstance(value, str) and len(value.strip()) >= MIN_SECRET_LENGTH:
        with _registered_lock:
            _registered.add(value.strip())


def register_client_secrets(client: Any) -> None:
    """Register the key a client object is configured with (``api_key``, or its
    ``Authorization`` header) — called when a meter wraps the client."""
    register_secret(getattr(client, "api_key", None))
    owner = client if isinstance(client, type) else type(client)
    if owner.__module__.startswith("dashscope"):  # the SDK keeps its key on the module
        import sys

        register_secret(getattr(sys.modules.get("dashscope"), "api_key", None))
    headers = getattr(client, "headers", None)
    if isinstance(headers, Mapping) or hasattr(headers, "get"):
        with contextlib.suppress(Exception):
            auth = headers.get("authorization")  # type: ignore[union-attr]
            if isinstance(auth, str):
                register_secret(auth.split()[-1] if auth.split() else None)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` with API keys and tokens masked: ``secrets`` and the registered keys by value,
    then anything shaped like a key, an ``Authorization`` value or a bearer token."""
    if not isinstance(text, str):
        text = str(text)
    with _registered_lock:
        values = set(_registered)
    values.update(s for s in secrets if isinstance(s, str) and s)
    values.update(v for v in (os.environ.get(name) for name in KEY_ENV)
                  if v and len(v) >= MIN_SECRET_LENGTH)
    for value in sorted(values, key=len, reverse=True):  # longest first: no partial leftovers
        if value in text:
            text = text.replace(value, MASK)
    return _SHAPES.sub(_mask_shape, text)


def _mask_shape(match: re.Match[str]) -> str:
    label = next((g for g in match.groups() if g is not None), "")
    return label + MASK


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
        if self.error:  # server messages can echo a key or a header back
            data["error"] = redact(self.error)
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


class TornLineWarning(QwenMeterWarning, UserWarning):
    """A JSONL log line that a killed writer left incomplete; it was skipped."""


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
        from ..base.checks import flag
        from ..base.checks import path as check_path

        self.path = Path(check_path(path, "JsonlLog(path=)") or "")
        self.fsync = flag(fsync, "JsonlLog(fsync=)")
        # Read access too, to look at the last byte; O_BINARY: no newline translation on Windows.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise UsageLogError(f"cannot open usage log {self.path}: {exc.strerror}") from exc

    def _torn_tail(self) -> bool:
        """Whether the file ends inside a line (a writer was killed mid-write)."""
        size = os.fstat(self._fd).st_size
        if size == 0:
            return False
        if hasattr(os, "pread"):
            last = os.pread(self._fd, 1, size - 1)
        else:  # Windows: appends seek to the end themselves, so moving the offset is harmless
            os.lseek(self._fd, size - 1, os.SEEK_SET)
            last = os.read(self._fd, 1)
        return last not in (b"\n", b"")

    def append(self, record: UsageRecord) -> None:
        if not isinstance(record, UsageRecord):
            from ..base.checks import type_error

            raise type_error("JsonlLog.append(record=)", "a UsageRecord", record)
        line = (record.to_json() + "\n").encode("utf-8")
        try:
            if self._torn_tail():
                # Terminate the fragment in the same write as the record: the record's line
                # then starts clean, and readers skip the fragment as one torn line.
                line = b"\n" + line
            written = os.write(self._fd, line)  # one write of the whole line
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


_TORN = object()


def read_jsonl(path: str | os.PathLike[str], *, torn: list[int] | None = None
               ) -> list[UsageRecord]:
    """All complete records of a JSONL log.

    A torn line (cut short by a killed writer: no newline, or not parseable as JSON) is
    skipped; each one is named in a :class:`TornLineWarning` and its line number appended to
    ``torn`` when given. A line that is whole JSON but not a record raises
    :class:`UsageLogError` naming the line.
    """
    skipped: list[int] = []
    records = []
    try:
        handle = open(path, "rb")  # noqa: SIM115 (closed below; OSError must be mapped)
    except OSError as exc:
        raise UsageLogError(f"cannot read usage log {path}: {exc.strerror}") from exc
    with handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                data = json.loads(line) if line.endswith(b"\n") else _TORN
            except ValueError:
                data = _TORN
            if data is _TORN:
                skipped.append(number)
                continue
            try:
                if not isinstance(data, Mapping):
                    raise TypeError("not a JSON object")
                records.append(UsageRecord.from_dict(data))
            except (ValueError, TypeError) as exc:
                raise UsageLogError(f"{path}, line {number}: not a usage record: {exc}") from exc
    for number in skipped:
        warnings.warn(f"{path}, line {number}: torn record skipped", TornLineWarning,
                      stacklevel=2)
    if torn is not None:
        torn.extend(skipped)
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
    from ..base.checks import path as check_path

    path = check_path(target, "log=") or ""
    if path.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteLog(path)
    return JsonlLog(path)


def read_usage(source: str | os.PathLike[str] | UsageLog | Sequence[UsageRecord]
               ) -> list[UsageRecord]:
    """All records from a JSONL path, an SQLite path, a log object or a list (torn JSONL
    lines are skipped with a :class:`TornLineWarning`)."""
    if isinstance(source, (str, os.PathLike)):
        from ..base.checks import path as check_path

        path = check_path(source, "read_usage(source=)") or ""
        if not os.path.isfile(path):
            raise UsageLogError(f"no usage log at {path}")
        if path.endswith((".db", ".sqlite", ".sqlite3")):
            log = SQLiteLog(path)
            try:
                return list(log)
            finally:
                log.close()
        return read_jsonl(path)
    if isinstance(source, UsageLog):
        return list(source)
    if isinstance(source, (str, bytes, Mapping)) or not isinstance(source, Iterable):
        from ..base.checks import type_error

        raise type_error("read_usage(source=)", "a log path, a UsageLog or a list of records",
                         source)
    records = list(source)
    for n, record in enumerate(records):
        if not isinstance(record, UsageRecord):
            from ..base.checks import type_error

            raise type_error(f"read_usage(source[{n}]=)", "a UsageRecord", record)
    return records
