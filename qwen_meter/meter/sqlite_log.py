"""The SQLite usage log: records in table ``usage``, the journal's open intents in ``intents``.

An intent is a row of ``intents``; its outcome is inserted into ``usage`` and the intent
deleted in the same transaction, so ``intents`` holds exactly the calls not yet settled
(recovery reads only them) and ``usage`` one row per call. WAL mode.

Durability (``durability=``): ``"flush"`` (default) commits each write with
``synchronous=NORMAL`` — a commit survives the process being killed, not a power cut;
``"fsync"`` uses ``synchronous=FULL`` — survives a power cut too; ``"buffered"`` hands writes
to a background thread that commits them in batches (a ``kill -9`` loses what was queued).
Under asyncio every write goes through that thread (a write can wait on another process's
lock), batched into one transaction; the loop awaits it unless ``buffered``.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..base.sqlite import enable_wal
from .journal import intent_json, pending_record
from .logbase import FileLog, check_durability
from .queued import Item as _Item
from .queued import QueuedWrites
from .record_checks import json_or_unreadable, record_or_warn
from .records import UsageLogError, UsageRecord
from .writer import BackgroundWriter


class SQLiteLog(QueuedWrites, FileLog):
    """Records in an SQLite table (WAL mode; one short transaction per write)."""

    _COLUMNS = ("id", "time", "model", "status", "prompt_tokens", "completion_tokens", "cost",
                "currency", "user")

    def __init__(self, path: str | os.PathLike[str], *, durability: str = "flush") -> None:
        self.path = Path(path)
        self.durability = check_durability(durability, False, "SQLiteLog")
        self._lock = threading.Lock()
        self._writer: BackgroundWriter[_Item] | None = None
        synchronous = "FULL" if self.durability == "fsync" else "NORMAL"
        try:
            self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None,
                                       check_same_thread=False)
            enable_wal(self._db)
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("CREATE TABLE IF NOT EXISTS usage (id TEXT PRIMARY KEY, "
                             "time TEXT, model TEXT, status TEXT, prompt_tokens INTEGER, "
                             "completion_tokens INTEGER, cost TEXT, currency TEXT, user TEXT, "
                             "version INTEGER, record TEXT NOT NULL)")
            self._db.execute("CREATE TABLE IF NOT EXISTS intents (id TEXT PRIMARY KEY, "
                             "time TEXT, record TEXT NOT NULL)")
        except sqlite3.Error as exc:
            raise UsageLogError(f"cannot open usage log {self.path}: {exc}") from exc

    def _write(self, items: list[_Item]) -> None:
        """One transaction for ``items``."""
        try:
            with self._lock:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    for item in items:
                        if isinstance(item, UsageRecord):
                            values = [getattr(item, c) for c in self._COLUMNS]
                            self._db.execute(
                                "INSERT INTO usage VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                                (*values, item.version, item.to_json()))
                            self._db.execute("DELETE FROM intents WHERE id = ?", (item.id,))
                        else:
                            self._db.execute("INSERT OR REPLACE INTO intents VALUES (?, ?, ?)",
                                             (item.get("id"), item.get("time"),
                                              intent_json(item)))
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise UsageLogError(f"cannot write usage log {self.path}: {exc}") from exc

    @property
    def _writer_name(self) -> str:  # type: ignore[override]
        return f"qwen_meter log {self.path.name}"

    def _check_record(self, record: Any) -> UsageRecord:
        return _checked(record)

    def __iter__(self) -> Iterator[UsageRecord]:
        self.flush()
        with self._lock:
            rows = self._db.execute(
                "SELECT time, id, record, 0 FROM usage UNION ALL "
                "SELECT time, id, record, 1 FROM intents ORDER BY 1, 2").fetchall()
        out = (record_or_warn(json_or_unreadable(row[2]), f"{self.path}, row {row[1]}",
                              pending_record if row[3] else UsageRecord.from_dict)
               for row in rows)
        return (record for record in out if record is not None)

    def pending_intents(self) -> list[dict[str, Any]]:
        self.flush()
        with self._lock:
            rows = self._db.execute("SELECT record FROM intents ORDER BY time").fetchall()
        return [json.loads(row[0]) for row in rows]

    def close(self) -> None:
        self._stop_writer()
        with self._lock:
            self._db.close()


def _checked(record: Any) -> UsageRecord:
    if not isinstance(record, UsageRecord):
        from ..base.checks import type_error

        raise type_error("SQLiteLog.append(record=)", "a UsageRecord", record)
    return record
