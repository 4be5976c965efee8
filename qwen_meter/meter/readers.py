"""Reading a usage log back: one record per call, whatever sink wrote it.

Readers fold the journal (:func:`~.journal.fold`): a call's intent and its outcome become the
outcome; an intent without one is shown as a ``pending`` call.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .journal import fold, is_intent
from .logbase import UsageLog
from .record_checks import Unreadable, record_or_warn
from .records import TornLineWarning, UsageLogError, UsageRecord

_TORN = object()


def read_jsonl(path: str | os.PathLike[str], *, torn: list[int] | None = None
               ) -> list[UsageRecord]:
    """All complete records of a JSONL log, one per call (intents folded, see
    :func:`~.journal.fold`).

    A torn line (cut short by a killed writer: no newline, or not parseable as JSON) is
    skipped; each one is named in a :class:`TornLineWarning` and its line number appended to
    ``torn`` when given. A line that is whole JSON but not a valid record (a field of the wrong
    type or out of range: ``"cost": "-5"``, ``"prompt_tokens": "123"``) is skipped too, named
    with its field in an :class:`InvalidRecordWarning` — never summed.
    """
    skipped: list[int] = []
    records: list[UsageRecord | Mapping[str, Any]] = []
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
            except RecursionError:  # whole, but nested too deep to be a record
                data = Unreadable("nested too deeply to be a record")
            if data is _TORN:
                skipped.append(number)
                continue
            if isinstance(data, Mapping) and is_intent(data):
                records.append(data)
                continue
            record = record_or_warn(data, f"{path}, line {number}", UsageRecord.from_dict)
            if record is not None:
                records.append(record)
    for number in skipped:
        warnings.warn(f"{path}, line {number}: torn record skipped", TornLineWarning,
                      stacklevel=2)
    if torn is not None:
        torn.extend(skipped)
    return fold(records)


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
            from .sqlite_log import SQLiteLog

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
