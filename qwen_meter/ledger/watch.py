"""Watching the ledger's change version from a daemon thread: a poll (SQLite, and PostgreSQL's
fallback while it reconnects) or PostgreSQL's LISTEN (see :mod:`.postgres`)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger("qwen_meter.ledger")


def call_safely(callback: Callable[[int], None], version: int) -> None:
    """A watcher's callback must not kill its thread: its errors are logged."""
    try:
        callback(version)
    except Exception:
        log.exception("ledger watch callback failed for version %d", version)


class PollWatch:
    """``callback(version)`` whenever ``read()`` returns a number other than the last one,
    read every ``interval`` seconds in a daemon thread."""

    def __init__(self, read: Callable[[], int], callback: Callable[[int], None], *,
                 interval: float, start: int, name: str) -> None:
        self._read = read
        self._callback = callback
        self._interval = interval
        self._last = start
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        failing = False
        while not self._stopped.wait(self._interval):
            try:
                version = self._read()
            except Exception as exc:  # a locked or vanished file: say so once, keep polling
                if not failing:
                    log.warning("ledger watch cannot read the version: %s", exc)
                failing = True
                continue
            failing = False
            if version != self._last and not self._stopped.is_set():
                self._last = version
                call_safely(self._callback, version)

    def stop(self) -> None:
        """Stop polling (returns once the thread has ended, unless called from it)."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
