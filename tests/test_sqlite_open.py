"""Processes opening one new SQLite file together: the switch to WAL mode waits for the others
instead of failing with "database is locked" (seen when three gateway replicas started on one
new ledger file: while another process sets the new file up, SQLite can answer the switch
without calling its busy handler). Here the other process holds the lock longer than the
connection's busy timeout, which fails the plain switch the same way, deterministically."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from qwen_meter.base.sqlite import enable_wal


def _held(path):
    """Another connection in the middle of writing the new file (an exclusive lock)."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    other.execute("CREATE TABLE t (x)")
    return other


def test_a_plain_switch_fails_at_once_while_another_writes(tmp_path):
    """The failure enable_wal exists for."""
    path = tmp_path / "new.db"
    other = _held(path)
    try:
        db = sqlite3.connect(path, timeout=0.05, isolation_level=None)
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            db.execute("PRAGMA journal_mode=WAL")
        db.close()
    finally:
        other.execute("COMMIT")
        other.close()


def test_enable_wal_waits_for_the_other_writer(tmp_path):
    path = tmp_path / "new.db"
    other = _held(path)
    released = threading.Event()

    def release() -> None:
        released.wait(10)
        other.execute("COMMIT")

    thread = threading.Thread(target=release)
    thread.start()
    db = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        # The first attempts meet the lock; the writer commits while enable_wal retries.
        threading.Timer(0.3, released.set).start()
        enable_wal(db)
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        thread.join()
        db.close()
        other.close()


def test_enable_wal_gives_up_after_its_patience(tmp_path):
    path = tmp_path / "new.db"
    other = _held(path)
    db = sqlite3.connect(path, timeout=0.05, isolation_level=None)
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            enable_wal(db, patience=0.05)
    finally:
        db.close()
        other.execute("COMMIT")
        other.close()
