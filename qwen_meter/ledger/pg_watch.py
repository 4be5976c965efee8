"""PostgreSQL's watch: ``LISTEN qwen_meter_ledger`` on a connection of its own, in a daemon
thread, calling back with the version each ``NOTIFY`` carries.

A notification sent while the connection is down is lost, so the thread re-reads the version
whenever it (re)connects and calls back if it moved; it also re-reads it after
:data:`CHECK_EVERY` quiet seconds, which both catches a change it could have missed and finds
a connection that died without a word (TCP keepalives find it too). A dropped connection is
reopened with a growing pause (up to :data:`MAX_PAUSE` seconds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .watch import call_safely

log = logging.getLogger("qwen_meter.ledger")

CHANNEL = "qwen_meter_ledger"
#: seconds between reads of the version when no notification came
CHECK_EVERY = 5.0
#: longest pause between two attempts to reconnect
MAX_PAUSE = 5.0
#: how often the thread looks whether it was stopped
_TICK = 0.25


class ListenWatch:
    """``callback(version)`` after each change, from a daemon thread (see the module)."""

    def __init__(self, connect: Callable[..., Any], read: Callable[[Any], int],
                 callback: Callable[[int], None], *, start: int) -> None:
        self._connect = connect
        self._read = read
        self._callback = callback
        self._last = start
        self._stopped = threading.Event()
        self._conn: Any = None
        #: how many times the thread (re)connected (for tests and diagnostics)
        self.connections = 0
        self._thread = threading.Thread(target=self._run, name="qwen_meter ledger watch",
                                        daemon=True)
        self._thread.start()

    def _seen(self, version: int) -> None:
        # Newer only: a notification can trail the re-read that already reported it.
        if version > self._last and not self._stopped.is_set():
            self._last = version
            call_safely(self._callback, version)

    def _run(self) -> None:
        pause = 0.2
        while not self._stopped.is_set():
            try:
                self._listen()
                pause = 0.2
            except Exception as exc:  # the server went away or the network dropped
                if self._stopped.is_set():
                    return
                log.warning("ledger watch lost its connection (%s); reconnecting in %.1f s",
                            exc, pause)
                self._stopped.wait(pause)
                pause = min(pause * 2, MAX_PAUSE)
            finally:
                self._close()

    def _listen(self) -> None:
        self._conn = conn = self._connect(
            autocommit=True, application_name="qwen_meter ledger watch", keepalives=1,
            keepalives_idle=10, keepalives_interval=5, keepalives_count=3)
        conn.execute(f"LISTEN {CHANNEL}")
        self.connections += 1
        self._seen(self._read(conn))  # what changed while no one was listening
        checked = time.monotonic()
        while not self._stopped.is_set():
            for note in conn.notifies(timeout=_TICK):
                try:
                    self._seen(int(note.payload))
                except ValueError:
                    log.warning("ledger watch: unexpected payload %r", note.payload)
                checked = time.monotonic()
            if time.monotonic() - checked > CHECK_EVERY:
                self._seen(self._read(conn))
                checked = time.monotonic()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception as exc:  # closing a dead connection: nothing left to release
                log.debug("ledger watch: closing the connection failed: %s", exc)

    def stop(self) -> None:
        """Stop listening (returns once the thread has ended, unless called from it)."""
        self._stopped.set()
        if self._thread is not threading.current_thread():
            self._thread.join()
