"""The usage log: one versioned record per call, in JSONL (default) or SQLite, with a
write-ahead journal of the calls in flight.

The parts, one job each:

- :mod:`.records` — :class:`UsageRecord` (the schema) and the log's errors;
- :mod:`.redaction` — :func:`redact` and the registered secrets;
- :mod:`.journal` — intents and outcomes, folding them, who wrote an intent;
- :mod:`.sinks` — the :class:`UsageLog` interface, :class:`JsonlLog`, durability settings;
- :mod:`.sqlite_log` — :class:`SQLiteLog`;
- :mod:`.writer` — the background writer of buffered and asyncio writes;
- :mod:`.readers` — :func:`read_jsonl`, :func:`read_usage` (one record per call);
- :mod:`.recovery` — settling the intents of processes that died (status ``lost``).

This module re-exports them under the names 0.2 used.
"""

from __future__ import annotations

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
from .sinks import DURABILITY, JsonlLog, UsageLog, open_log
from .sqlite_log import SQLiteLog

__all__ = ["DURABILITY", "KEY_ENV", "MASK", "MIN_SECRET_LENGTH", "SCHEMA_VERSION", "JsonlLog",
           "SQLiteLog", "TornLineWarning", "UsageLog", "UsageLogError", "UsageRecord",
           "open_log", "read_jsonl", "read_usage", "redact", "register_client_secrets",
           "register_secret"]
