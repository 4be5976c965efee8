"""The DuckDB side of the report engine: the connection (UTC, progress kept for the report's
own bar), time zone checks, DuckDB's progress polled while a query runs, chunks read ahead by a
thread while the SQL of the last one runs, and DuckDB's Ctrl-C turned into KeyboardInterrupt.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pyarrow as pa

from ..base.errors import QwenMeterError
from . import sql


def connect() -> Any:
    """A DuckDB connection whose zone is UTC (times without an offset are UTC, as the log's)."""
    try:
        import duckdb
    except ImportError as exc:
        raise QwenMeterError('reports need duckdb: pip install ".[reports]"') from exc
    db = duckdb.connect()
    db.execute("SET TimeZone = 'UTC'")
    # Progress is read with query_progress() and drawn by the report, never by DuckDB.
    db.execute("SET enable_progress_bar = true")
    db.execute("SET enable_progress_bar_print = false")
    return db


def system_zone() -> str:
    """The machine's time zone as an IANA name (as DuckDB detects it), else UTC."""
    import duckdb

    try:
        with duckdb.connect() as db:
            row = db.execute("SELECT current_setting('TimeZone')").fetchall()[0]
        return str(row[0]) if row and row[0] else "UTC"
    except duckdb.Error:
        return "UTC"


_KNOWN_ZONES = {"UTC"}


def check_zone(tz: str) -> str:
    """``tz`` if it is a zone name the engine knows, else a ConfigurationError (a zone found
    once is remembered: each check costs a DuckDB connection, and a report checks twice)."""
    from ..base.errors import ConfigurationError

    if tz in _KNOWN_ZONES:
        return tz
    db = connect()
    try:
        db.execute(f"SELECT timezone({sql.quote(tz)}, TIMESTAMPTZ '2026-01-01 00:00:00+00')")
    except Exception as exc:  # duckdb raises its own error types
        raise ConfigurationError(f"unknown time zone {tz!r} (use an IANA name such as "
                                 "Asia/Shanghai or UTC)") from exc
    finally:
        db.close()
    _KNOWN_ZONES.add(tz)
    return tz


def import_behind(module: str) -> None:
    """Imports ``module`` on a daemon thread, so its import overlaps work that releases the
    GIL (DuckDB reading the logs); an ``import`` of it later waits for this one to finish."""
    import importlib
    import sys

    if module in sys.modules:
        return

    def load() -> None:
        with contextlib.suppress(ImportError):  # reported where it is really needed
            importlib.import_module(module)

    threading.Thread(target=load, daemon=True, name=f"qwen-meter-import-{module}").start()


def _reraise_interrupt(exc: BaseException) -> None:
    """Ctrl-C while DuckDB runs a query comes back as its InterruptException: make it the
    KeyboardInterrupt it is (not a reason to read the file another way)."""
    if type(exc).__name__ == "InterruptException":
        raise KeyboardInterrupt from exc


@contextlib.contextmanager
def _polled(db: Any, report: Callable[[float], None], every: float = 0.2) -> Iterator[None]:
    """Calls ``report(share done)`` from a thread while ``db`` runs a query (DuckDB's own
    progress), so the bar moves while a file is read in one query."""
    stop = threading.Event()

    def poll() -> None:
        while not stop.wait(every):
            try:
                share = float(db.query_progress())
            except Exception:  # no query running (yet / any more)
                continue
            if share >= 0:
                report(min(share, 100.0) / 100.0)

    thread = threading.Thread(target=poll, daemon=True, name="qwen-meter-report-progress")
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _prefetch(chunks: Iterator[pa.Table], depth: int = 2) -> Iterator[pa.Table]:
    """``chunks`` read by a thread ahead of the consumer (file reads and numpy release the
    GIL, and so does DuckDB while it runs the SQL of the previous chunk)."""
    box: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work() -> None:
        try:
            for chunk in chunks:
                if stop.is_set():
                    return
                box.put(chunk)
            box.put(done)
        except BaseException as exc:  # handed to the consumer, raised there
            box.put(exc)

    thread = threading.Thread(target=work, daemon=True, name="qwen-meter-report-reader")
    thread.start()
    try:
        while True:
            item = box.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # unblock a reader waiting on a full queue
            with contextlib.suppress(queue.Empty):
                box.get(timeout=0.05)
