"""A ledger as a report source: the ``record`` column of its ``records`` table — exactly
``UsageRecord.to_json()`` — streamed as the same JSON-line chunks ``(source, line, text)`` as a
log file, so the report's SQL checks and folds a ledger's records the way it does a log's: the
same records give the same numbers, whichever holds them.

* ``postgresql://…`` (or ``postgres://``): read with ADBC (``adbc_driver_postgresql``) as Arrow
  record batches. The driver fetches the query with PostgreSQL's binary ``COPY … TO STDOUT``
  and decodes it in C into Arrow buffers, so no Python runs per record; the batches go to
  DuckDB as they are. The alternative, psycopg's ``COPY (SELECT record …) TO STDOUT`` with the
  lines cut by numpy as for a JSONL file, needs one Python call per row (psycopg hands out
  COPY data a row at a time) and measured slower at 1M rows (see ``benchmarks/
  bench_report_ledger.py`` and docs/benchmarks.md), so ADBC it is.
* ``sqlite:///path`` (SQLAlchemy's spelling: ``sqlite:////abs/ledger.db`` for an absolute path):
  the ``record`` column through :mod:`sqlite3`, in batches.

The read is one query, hence one snapshot: records written by the gateways meanwhile are in the
report whole or not at all. The ledger's ``intents`` (calls in flight) are not read.

``since`` / ``until`` are pushed down into the ledger's ``WHERE`` on ``time`` with two days of
slack at either edge (any zone's day fits inside it): the ledger sends only the records near the
period, and the report still applies the exact bound in the report's zone.

A server that cannot be reached, a database without a ``records`` table, a missing SQLite file:
:class:`~.sources.ReportInputError` naming the URL, its password masked.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from ..ledger.common import mask_url, scrub
from .sources import CHUNK_BYTES, LINES_SCHEMA, Progress, ReportInputError

POSTGRES_SCHEMES = ("postgresql", "postgres")
#: The slack of the pushed-down period: a day of any zone lies within two UTC days of its date.
_SLACK = dt.timedelta(days=2)
_TABLE = "records"


def is_ledger_url(text: str) -> bool:
    """True for ``postgresql://…``, ``postgres://…`` and ``sqlite:///…`` (a ledger, not a file)."""
    scheme, sep, _ = str(text).partition("://")
    return bool(sep) and scheme.lower() in (*POSTGRES_SCHEMES, "sqlite")


def _clean(message: str, url: str) -> str:
    """A driver's message without the password (should it echo the URL), on one line."""
    return " ".join(scrub(message, url).replace(url, mask_url(url)).split())


def utc_window(since: dt.date | dt.datetime | None, until: dt.date | dt.datetime | None
               ) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The pushed-down period: the report's bounds widened by :data:`_SLACK` (UTC, aware)."""

    def widen(value: dt.date | dt.datetime | None, sign: int) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            value = dt.datetime(value.year, value.month, value.day)
        if value.tzinfo is not None:
            value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
        return (value + sign * _SLACK).replace(tzinfo=dt.timezone.utc)

    return widen(since, -1), widen(until, +1)


_SCHEMA = LINES_SCHEMA.append(pa.field("id", pa.string()))


def _lines(name: str, first: int, ids: pa.Array, text: pa.Array) -> pa.Table:
    """Line tables with the records' ids beside (the engine names listed records by id)."""
    count = len(text)
    sources = pa.DictionaryArray.from_arrays(pa.array([0] * count, type=pa.int32()),
                                             pa.array([name])).cast(pa.string())
    numbers = pa.array(range(first, first + count), type=pa.int64())
    return pa.Table.from_arrays([sources, numbers, text.cast(pa.string()),
                                 ids.cast(pa.string())], schema=_SCHEMA)


def ledger_chunks(url: str, progress: Progress, *, since: dt.date | dt.datetime | None = None,
                  until: dt.date | dt.datetime | None = None) -> Iterator[pa.Table]:
    """The ledger at ``url`` as line tables (line: the record's place in this read)."""
    low, high = utc_window(since, until)
    if url.split("://", 1)[0].lower() == "sqlite":
        return _sqlite_chunks(url, progress, low, high)
    return _postgres_chunks(url, progress, low, high)


def _postgres_chunks(url: str, progress: Progress, low: dt.datetime | None,
                     high: dt.datetime | None) -> Iterator[pa.Table]:
    try:
        import adbc_driver_manager
        import adbc_driver_postgresql.dbapi as adbc
    except ImportError as exc:
        raise ReportInputError('reading a PostgreSQL ledger needs `pip install '
                               f'"qwen-meter[postgres]"` (missing: {exc.name})') from None
    name = mask_url(url)
    where = [f"time >= TIMESTAMPTZ '{low.isoformat()}'" if low else "",
             f"time < TIMESTAMPTZ '{high.isoformat()}'" if high else ""]
    query = f"SELECT id, record FROM {_TABLE}" + \
        (" WHERE " + " AND ".join(w for w in where if w) if any(where) else "")
    try:
        conn = adbc.connect(_libpq_url(url))
    except adbc_driver_manager.Error as exc:
        raise ReportInputError(f"{name}: cannot connect to the ledger "
                               f"({_clean(str(exc), url)})") from None
    try:
        cursor = conn.cursor()
        # Large batches: the report's SQL runs once per batch, like a JSONL block.
        cursor.adbc_statement.set_options(
            **{"adbc.postgresql.batch_size_hint_bytes": str(CHUNK_BYTES)})
        size = 0  # the bar's share of this ledger: its table's size on disk
        if progress.enabled:
            cursor.execute(f"SELECT pg_table_size('{_TABLE}')")
            size = int(cursor.fetchone()[0] or 0)
            progress.total += size
        cursor.execute(query)
        reader = cursor.fetch_record_batch()
        line = 1
        for batch in reader:
            text = batch.column(1)
            progress.advance(min(text.nbytes, size), name)
            size -= min(text.nbytes, size)
            yield _lines(name, line, batch.column(0), text)
            line += len(text)
        progress.advance(size, name)  # a period reads part of it: the bar still ends full
    except adbc_driver_manager.Error as exc:
        raise ReportInputError(f"{name}: cannot read the ledger's {_TABLE} table "
                               f"({_explain(_clean(str(exc), url))})") from None
    finally:
        conn.close()


def _libpq_url(url: str) -> str:
    """libpq accepts ``postgresql://`` and ``postgres://`` (any case is not): normalised."""
    scheme, _, rest = url.partition("://")
    return f"{scheme.lower()}://{rest}"


def _explain(message: str) -> str:
    if "does not exist" in message and f'"{_TABLE}"' in message:
        return f"no {_TABLE} table: not a qwen_meter ledger, or one not set up yet"
    return message.split(" Query was:")[0]


def sqlite_path(url: str) -> Path:
    """The file of ``sqlite:///relative.db`` or ``sqlite:////absolute/ledger.db``."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or rest == "/":
        raise ReportInputError(f"{mask_url(url)}: not a SQLite ledger URL (sqlite:///ledger.db, "
                               "or sqlite:////absolute/path/ledger.db)")
    return Path(rest[1:].split("?", 1)[0])


def _sqlite_chunks(url: str, progress: Progress, low: dt.datetime | None,
                   high: dt.datetime | None, batch: int = 100_000) -> Iterator[pa.Table]:
    path = sqlite_path(url)
    name = mask_url(url)
    if not path.is_file():
        raise ReportInputError(f"{name}: no such ledger file ({path})")
    # ISO times compare as text; the two days of slack make any offset's day fall inside.
    where, params = [], []
    if low:
        where.append("time >= ?")
        params.append(low.date().isoformat())
    if high:
        where.append("time < ?")
        params.append(high.date().isoformat())
    query = f"SELECT id, record FROM {_TABLE}" + (" WHERE " + " AND ".join(where) if where else "")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReportInputError(f"{name}: cannot open ({exc})") from None
    try:
        size = path.stat().st_size if progress.enabled else 0
        progress.total += size
        cursor = db.execute(query, params)
        line = 1
        while rows := cursor.fetchmany(batch):
            ids, texts = zip(*rows, strict=True)
            text = pa.array([t if isinstance(t, str) else "" for t in texts], type=pa.string())
            progress.advance(min(text.nbytes, size), name)
            size -= min(text.nbytes, size)
            yield _lines(name, line, pa.array(ids, type=pa.string()), text)
            line += len(rows)
        progress.advance(size, name)
    except sqlite3.Error as exc:
        why = f"no {_TABLE} table: not a qwen_meter ledger" if "no such table" in str(exc) \
            else str(exc)
        raise ReportInputError(f"{name}: cannot read the ledger ({why})") from None
    finally:
        db.close()
