"""The write path shared by the SQLite log and the SQL ledgers: a record or a journal intent is
written at once (``flush`` / ``fsync``: the caller's own transaction) or handed to the
:class:`~.writer.BackgroundWriter` (``buffered``: the caller does not wait). Under asyncio every
write goes through the writer thread — a database write can wait on another process's lock,
which must not block the event loop — and the loop awaits it unless ``buffered``.

A class using it supplies ``_write(items)`` (one transaction for a batch), ``durability``,
``_writer_name`` and the checks of what callers hand in (``_check_record``,
``_check_intent``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .journal import intent_json
from .records import UsageRecord
from .writer import BackgroundWriter

#: One write: an outcome (a record) or an intent (its JSON form).
Item = UsageRecord | Mapping[str, Any]


def _text(item: Item) -> str:
    """What the writer logs of an item it could not write (so it can be recovered)."""
    return item.to_json() if isinstance(item, UsageRecord) else intent_json(item)


class QueuedWrites:
    """``append`` / ``append_intent`` and their async twins over ``_write``."""

    durability: str = "flush"
    _writer: BackgroundWriter[Item] | None = None
    _writer_name = "qwen_meter log writer"

    def _write(self, items: list[Item]) -> object:
        raise NotImplementedError

    def _check_record(self, record: Any) -> UsageRecord:
        raise NotImplementedError

    def _check_intent(self, intent: Any) -> Mapping[str, Any]:
        return intent  # type: ignore[no-any-return]

    def _background(self) -> BackgroundWriter[Item]:
        if self._writer is None:
            self._writer = BackgroundWriter(self._write, _text, self._writer_name)
        return self._writer

    def _put(self, item: Item) -> None:
        if self.durability == "buffered":
            self._background().submit(item, wait=False)
        else:
            self._write([item])

    async def _put_async(self, item: Item) -> None:
        future = self._background().submit(item, wait=self.durability != "buffered")
        if future is not None:
            import asyncio

            await asyncio.wrap_future(future)

    def append(self, record: UsageRecord) -> None:
        self._put(self._check_record(record))

    async def append_async(self, record: UsageRecord) -> None:
        await self._put_async(self._check_record(record))

    def append_intent(self, intent: Mapping[str, Any]) -> None:
        self._put(self._check_intent(intent))

    async def append_intent_async(self, intent: Mapping[str, Any]) -> None:
        await self._put_async(self._check_intent(intent))
