"""What every SQLite file of qwen_meter (limiter store, usage log, ledger) does on open."""

from __future__ import annotations

import sqlite3
import time


def enable_wal(db: sqlite3.Connection, *, patience: float = 30.0) -> None:
    """Switch ``db`` to WAL mode, waiting for other processes that open the same file.

    While another process is creating or switching the same new file, SQLite answers the
    journal-mode change with "database is locked" at once — its busy timeout does not apply to
    it — so processes starting together would fail. The switch is retried with a growing pause
    for up to ``patience`` seconds; any other error, or still locked after that, is raised.
    """
    deadline = time.monotonic() + patience
    pause = 0.005
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
