"""A log's background writer: one thread that writes what callers hand it, in batches.

Used where a caller must not wait on the disk itself: a ``buffered`` log (the caller does not
wait at all), an ``fsync`` log under asyncio and every SQLite write under asyncio (the event
loop awaits a future the thread resolves, and never blocks on ``fsync`` or a database lock).
Whatever is queued when the thread wakes is written together — one ``write`` (and one
``fsync``) or one transaction for many records — so the cost per record falls as load grows.

Nothing queued is lost on a clean exit: :meth:`BackgroundWriter.close` (``Meter.close()`` /
the log's ``close()``) drains the queue, and an ``atexit`` hook drains every writer still open.
A batch that cannot be written is retried one item at a time; an item that still fails sets
its caller's future, or — when nobody waits (``buffered``) — is logged at ERROR level with its
text, so the record can be recovered from the application's log.
"""

from __future__ import annotations

import atexit
import logging
import threading
import weakref
from collections.abc import Callable
from concurrent.futures import Future
from typing import Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger("qwen_meter.usage")

_open: weakref.WeakSet[BackgroundWriter[object]] = weakref.WeakSet()


class BackgroundWriter(Generic[T]):
    """Runs ``write(batch)`` in one daemon thread for items handed to :meth:`submit`."""

    def __init__(self, write: Callable[[list[T]], object], describe: Callable[[T], str],
                 name: str) -> None:
        self._write = write
        self._describe = describe
        self._name = name
        self._cond = threading.Condition()
        self._items: list[tuple[T, Future[None] | None]] = []
        self._busy = False
        self._closed = False
        self._thread: threading.Thread | None = None

    def submit(self, item: T, *, wait: bool) -> Future[None] | None:
        """Queue ``item``; with ``wait``, a future that resolves once it is written."""
        future: Future[None] | None = Future() if wait else None
        with self._cond:
            if self._closed:
                raise RuntimeError(f"{self._name}: the log is closed")
            self._items.append((item, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
                _open.add(self)  # type: ignore[arg-type]
            self._cond.notify()
        return future

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items and self._closed:
                    return
                batch, self._items = self._items, []
                self._busy = True
            self._write_batch(batch)
            with self._cond:
                self._busy = False
                self._cond.notify_all()

    def _write_batch(self, batch: list[tuple[T, Future[None] | None]]) -> None:
        try:
            self._write([item for item, _ in batch])
        except Exception:
            # One bad item must not fail its neighbours: write them one at a time.
            for item, future in batch:
                try:
                    self._write([item])
                except Exception as exc:
                    if future is not None:
                        future.set_exception(exc)
                    else:
                        log.error("usage log write failed (%s); the record was: %s", exc,
                                  self._describe(item))
                else:
                    if future is not None:
                        future.set_result(None)
            return
        for _, future in batch:
            if future is not None:
                future.set_result(None)

    def flush(self) -> None:
        """Wait until everything queued so far is written."""
        with self._cond:
            while (self._items or self._busy) and self._thread is not None \
                    and self._thread.is_alive():
                self._cond.wait(0.5)

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join()


@atexit.register
def _drain_all() -> None:
    for writer in list(_open):
        writer.close()
