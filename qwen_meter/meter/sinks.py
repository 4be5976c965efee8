r"""The JSONL usage log (the interface: :mod:`.logbase`; SQLite: :mod:`.sqlite_log`).

Every log takes two kinds of line: *outcomes* (a :class:`~.records.UsageRecord`, one per call)
and *intents* (:mod:`.journal`: written before a request is sent, folded away by readers once
its outcome is there).

Durability settings: see :mod:`.logbase`. Under asyncio, ``"flush"`` writes on the event loop
(one ``O_APPEND`` write into the page cache costs about a microsecond, less than any hand-off to
a thread), ``"buffered"`` queues, and ``"fsync"`` goes to the log's writer thread, which
``fsync``\ s each batch once (group commit) while the caller awaits it.

JSONL lines are written with one ``write(2)`` of the whole line on a file opened with
``O_APPEND``: lines from several threads and processes never interleave. A writer killed in
the middle of a large write can leave a line without its newline; the next append sees that
torn tail and starts on a new line, so the fragment never swallows a good record. Readers skip
each torn line and name it (:class:`~.records.TornLineWarning`).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .journal import INTENT_PREFIX, intent_line, line_id
from .logbase import FileLog, check_durability
from .readers import read_jsonl
from .records import UsageLogError, UsageRecord
from .writer import BackgroundWriter

#: Beside a JSONL log: where the last recovery stopped (no unsettled intent lies before it).
CHECKPOINT_SUFFIX = ".journal"

class JsonlLog(FileLog):
    """Append-only JSON lines: one per call (and one intent per call while it runs).

    ``durability``: ``"buffered"``, ``"flush"`` (default) or ``"fsync"`` (see the module
    docs for what each survives); ``fsync=True`` is the 0.2 spelling of ``"fsync"``."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = False,
                 durability: str | None = None) -> None:
        from ..base.checks import path as check_path

        self.path = Path(check_path(path, "JsonlLog(path=)") or "")
        self.durability = check_durability(durability, fsync, "JsonlLog")
        self.fsync = self.durability == "fsync"
        self._writer: BackgroundWriter[bytes] | None = None
        self._scan_end = self._scan_inode = 0
        #: the file's size after this log's last whole write (-1: not known)
        self._end = -1
        # Read access too, to look at the last byte; O_BINARY: no newline translation on Windows.
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | getattr(os, "O_BINARY", 0)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise UsageLogError(f"cannot open usage log {self.path}: {exc.strerror}") from exc

    def _torn_tail(self) -> tuple[bool, int]:
        """Whether the file ends inside a line (a writer was killed mid-write), and its size.

        The size costs one lseek; the last byte is read only when the size is not the one
        this log's own last write left (a fresh open, another writer, a failed write).
        """
        size = os.lseek(self._fd, 0, os.SEEK_END)
        if size == 0 or size == self._end:
            return False, size
        if hasattr(os, "pread"):
            last = os.pread(self._fd, 1, size - 1)
        else:  # Windows: appends seek to the end themselves, so moving the offset is harmless
            os.lseek(self._fd, size - 1, os.SEEK_SET)
            last = os.read(self._fd, 1)
        return last not in (b"\n", b""), size

    def _write(self, lines: list[bytes]) -> None:
        """One ``write(2)`` of whole lines (and an ``fsync`` when durable)."""
        data = b"".join(lines)
        try:
            torn, size = self._torn_tail()
            self._end = -1  # unknown until this write is known to be whole
            if torn:
                # Terminate the fragment in the same write as the record: the record's line
                # then starts clean, and readers skip the fragment as one torn line.
                data = b"\n" + data
            written = os.write(self._fd, data)
            if written != len(data):  # a full disk; the partial line will be skipped on read
                raise UsageLogError(f"short write to {self.path} ({written} of {len(data)})")
            # Where this write ended if nobody appended in between (if someone did, the next
            # append sees another size and reads the last byte).
            self._end = size + written
            if self.fsync:
                os.fsync(self._fd)
        except OSError as exc:
            raise UsageLogError(f"cannot write usage log {self.path}: {exc.strerror}") from exc

    def _background(self) -> BackgroundWriter[bytes]:
        if self._writer is None:
            self._writer = BackgroundWriter(self._write, lambda b: b.decode("utf-8", "replace"),
                                            f"qwen_meter log {self.path.name}")
        return self._writer

    @staticmethod
    def _record_line(record: UsageRecord) -> bytes:
        if not isinstance(record, UsageRecord):
            from ..base.checks import type_error

            raise type_error("JsonlLog.append(record=)", "a UsageRecord", record)
        return record.to_line()

    def _put(self, line: bytes) -> None:
        if self.durability == "buffered":
            self._background().submit(line, wait=False)
        else:
            self._write([line])

    async def _put_async(self, line: bytes) -> None:
        if self.durability == "fsync":
            import asyncio

            future = self._background().submit(line, wait=True)
            assert future is not None
            await asyncio.wrap_future(future)
        else:
            # "flush": one O_APPEND write of a line into the page cache — a few microseconds,
            # cheaper than any hand-off to a thread (benchmarks/bench_journal.py), so it runs
            # on the loop; "buffered" only queues it.
            self._put(line)

    @property
    def runs_inline(self) -> bool:
        """Whether a write never waits (``flush``: one ``write(2)`` into the page cache;
        ``buffered``: queued), so the meter's asyncio steps call :meth:`append` in place."""
        return self.durability != "fsync"

    def append(self, record: UsageRecord) -> None:
        self._put(self._record_line(record))

    async def append_async(self, record: UsageRecord) -> None:
        await self._put_async(self._record_line(record))

    def append_intent(self, intent: Mapping[str, Any]) -> None:
        self._put(intent_line(intent))

    async def append_intent_async(self, intent: Mapping[str, Any]) -> None:
        await self._put_async(intent_line(intent))

    def __iter__(self) -> Iterator[UsageRecord]:
        self.flush()
        return iter(read_jsonl(self.path))

    # --- recovery ---------------------------------------------------------------------------

    @property
    def _checkpoint(self) -> Path:
        return self.path.with_name(self.path.name + CHECKPOINT_SUFFIX)

    def pending_intents(self) -> list[dict[str, Any]]:
        """Intents without an outcome, from the last recovery's checkpoint on (a scan that
        parses only intent lines)."""
        self.flush()
        start = 0
        inode = None
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            saved = json.loads(self._checkpoint.read_text())
            start, inode = int(saved["offset"]), saved.get("inode")
        pending: dict[str, dict[str, Any]] = {}
        try:
            handle = open(self.path, "rb")  # noqa: SIM115 (closed below; OSError mapped)
        except OSError as exc:
            raise UsageLogError(f"cannot read usage log {self.path}: {exc.strerror}") from exc
        with handle:
            stat = os.fstat(handle.fileno())
            if start > stat.st_size or inode != stat.st_ino:
                start = 0  # the log was replaced or rotated: scan it all
            handle.seek(start)
            offset = start
            for line in handle:
                if line.startswith(INTENT_PREFIX) and line.endswith(b"\n"):
                    with contextlib.suppress(ValueError):
                        intent = json.loads(line)
                        intent["_offset"] = offset
                        pending[str(intent.get("id"))] = intent
                elif pending:
                    found = line_id(line)
                    if found is not None:
                        pending.pop(found, None)
                offset += len(line)
        self._scan_end, self._scan_inode = offset, stat.st_ino
        return list(pending.values())

    def recovered(self, kept: list[dict[str, Any]]) -> None:
        offset = min((int(i["_offset"]) for i in kept), default=self._scan_end)
        temporary = self._checkpoint.with_name(self._checkpoint.name + f".{os.getpid()}")
        with contextlib.suppress(OSError):
            temporary.write_text(json.dumps({"offset": offset, "inode": self._scan_inode}))
            os.replace(temporary, self._checkpoint)

    def close(self) -> None:
        self._stop_writer()
        with contextlib.suppress(OSError):
            os.close(self._fd)
