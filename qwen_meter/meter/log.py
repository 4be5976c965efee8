"""The usage log: one versioned record per call, in JSONL (default) or SQLite, with a
write-ahead journal of the calls in flight.

The parts, one job each:

- :mod:`.records` — :class:`UsageRecord` (the schema) and the log's errors;
- :mod:`.redaction` — :func:`redact` and the registered secrets;
- :mod:`.journal` — intents and outcomes, folding them, who wrote an intent;
- :mod:`.logbase` — the :class:`UsageLog` interface, durability settings, the recovery lock;
- :mod:`.sinks` — :class:`JsonlLog`;
- :mod:`.sqlite_log` — :class:`SQLiteLog`;
- :mod:`.writer` — the background writer of buffered and asyncio writes;
- :mod:`.readers` — :func:`read_jsonl`, :func:`read_usage` (one record per call);
- :mod:`.recovery` — settling the intents of processes that died (status ``lost``).

This module re-exports them under the names 0.2 used, and opens a log by its path
(:func:`open_log`).
"""

from __future__ import annotations

import os

from .logbase import DURABILITY, UsageLog
from .readers import read_jsonl, read_usage
from .records import SCHEMA_VERSION, TornLineWarning, UsageLogError, UsageRecord
from .redaction import (
    KEY_ENV,
    MASK,
    MIN_SECRET_LENGTH,
    redact,
    register_client_secrets,
    register_secret,
)
from .sinks import JsonlLog
from .sqlite_log import SQLiteLog


def open_log(target: str | os.PathLike[str] | UsageLog | None, *,
             durability: str | None = None) -> UsageLog | None:
    """A log from a path (``.db`` / ``.sqlite`` → SQLite, anything else → JSONL)."""
    if target is None or isinstance(target, UsageLog):
        return target
    from ..base.checks import path as check_path

    path = check_path(target, "log=") or ""
    if "://" in path:  # a URL would otherwise become a folder named "postgresql:"
        import re

        shown = re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", path)
        raise UsageLogError(f"log={shown!r} is a URL, not a file: open it with "
                            "qwen_meter.open_ledger(url) and pass the ledger as log=")
    if path.endswith((".db", ".sqlite", ".sqlite3")):
        return SQLiteLog(path, durability=durability or "flush")
    return JsonlLog(path, durability=durability)


__all__ = ["DURABILITY", "KEY_ENV", "MASK", "MIN_SECRET_LENGTH", "SCHEMA_VERSION", "JsonlLog",
           "SQLiteLog", "TornLineWarning", "UsageLog", "UsageLogError", "UsageRecord",
           "open_log", "read_jsonl", "read_usage", "redact", "register_client_secrets",
           "register_secret"]
