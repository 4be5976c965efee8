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
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..base.sqlite import enable_wal
from .journal import intent_json, pending_record
from .logbase import FileLog, check_durability
from .record_checks import json_or_unreadable, record_or_warn
from .records import UsageLogError, UsageRecord
from .writer import BackgroundWriter

#: One write: an outcome (a record) or an intent (its JSON form).
_Item = UsageRecord | Mapping[str, Any]


class SQLiteLog(FileLog):
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

    def _background(self) -> BackgroundWriter[_Item]:
        if self._writer is None:
            self._writer = BackgroundWriter(
                self._write, lambda i: i.to_json() if isinstance(i, UsageRecord)
                else intent_json(i), f"qwen_meter log {self.path.name}")
        return self._writer

    def _put(self, item: _Item) -> None:
        if self.durability == "buffered":
            self._background().submit(item, wait=False)
        else:
            self._write([item])

    async def _put_async(self, item: _Item) -> None:
        future = self._background().submit(item, wait=self.durability != "buffered")
        if future is not None:
            import asyncio

            await asyncio.wrap_future(future)

    def append(self, record: UsageRecord) -> None:
        self._put(_checked(record))

    async def append_async(self, record: UsageRecord) -> None:
        await self._put_async(_checked(record))

    def append_intent(self, intent: Mapping[str, Any]) -> None:
        self._put(intent)

    async def append_intent_async(self, intent: Mapping[str, Any]) -> None:
        await self._put_async(intent)

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
