"""The usage log's interface (:class:`UsageLog`), its durability settings, the file lock of
recovery.

**Durability** (``durability=`` of :class:`~.sinks.JsonlLog` and
:class:`~.sqlite_log.SQLiteLog`), what an ``append`` that returned survives:

- ``"buffered"``: the record is handed to a background thread and written within moments; a
  clean exit (``close()``, interpreter exit) writes everything, but a process killed with
  ``kill -9`` loses what was still queued — and with it the intent of a call in flight, so
  recovery cannot charge it. For the lowest cost per call where that loss is acceptable.
- ``"flush"`` (default): each write is in the kernel (JSONL: one ``write(2)``; SQLite: a
  commit with ``synchronous=NORMAL``) before ``append`` returns: survives the process crashing
  or being killed (``kill -9``), not an OS crash or power cut.
- ``"fsync"``: also flushed to the disk (``fsync(2)``; SQLite ``synchronous=FULL``) before
  ``append`` returns: survives an OS crash and a power cut too, as far as the disk honours it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .records import UsageRecord

DURABILITY = ("buffered", "flush", "fsync")


def check_durability(durability: Any, fsync: Any, what: str) -> str:
    from ..base.checks import choice, flag

    flag(fsync, f"{what}(fsync=)")
    if durability is None:
        return "fsync" if fsync else "flush"
    choice(durability, DURABILITY, f"{what}(durability=)")
    return str(durability)


class UsageLog:
    """Where records go; see :class:`JsonlLog` and :class:`~.sqlite_log.SQLiteLog`.

    A log of your own needs :meth:`append` and ``__iter__``; without :meth:`append_intent`
    it keeps no journal (calls are recorded when settled, and a crash mid-call is not
    recovered)."""

    durability = "flush"

    def append(self, record: UsageRecord) -> None:
        raise NotImplementedError

    def append_intent(self, intent: Mapping[str, Any]) -> None:
        """Journal a call about to be sent (:mod:`.journal`); this base keeps no journal."""

    async def append_intent_async(self, intent: Mapping[str, Any]) -> None:
        """:meth:`append_intent` for asyncio (a log of your own: in a worker thread)."""
        if type(self).append_intent is not UsageLog.append_intent:
            import asyncio

            await asyncio.to_thread(self.append_intent, intent)

    def __iter__(self) -> Iterator[UsageRecord]:
        raise NotImplementedError

    def pending_intents(self) -> list[dict[str, Any]]:
        """The intents that have no outcome yet (for recovery)."""
        return []

    def recovered(self, kept: list[dict[str, Any]]) -> None:
        """After a recovery: ``kept`` are the intents left pending (their writers live)."""

    def recovery_lock(self) -> contextlib.AbstractContextManager[None]:
        """Held while recovering, so two processes starting at once settle an intent once
        (this base: a log of your own is recovered by one process at a time)."""
        return contextlib.nullcontext()

    def flush(self) -> None:
        """Wait until every record appended so far is written (``buffered`` logs)."""

    def close(self) -> None:
        """Write what is queued and release the file."""


class FileLog(UsageLog):
    """What the JSONL and SQLite logs share: a file at ``path``, a lock file beside it for
    recovery, and an optional background writer (``buffered`` and asyncio writes)."""

    path: Path
    _writer: Any = None

    def recovery_lock(self) -> contextlib.AbstractContextManager[None]:
        return file_lock(self.path.with_name(self.path.name + ".lock"))

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def _stop_writer(self) -> None:
        """Write what is queued and stop the writer (the first step of ``close``)."""
        if self._writer is not None:
            self._writer.close()


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` (created), between processes of this host."""
    try:
        import fcntl
    except ImportError:  # Windows: recovery relies on the store refusing a second commit
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
