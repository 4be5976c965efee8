"""The records behind the dashboard, loaded once into DuckDB with the report's own checks.

Each source is read by the report engine (:mod:`..engine`): the same parse, the same checks,
the same skipped lines — so every number equals ``qwen-meter report``'s. The usable records
go into one ``records`` table (with the drill-down fields: id, error, latency), with what makes
the views' scans cheap: each time as epoch seconds (``sec``: local days and hours are integer
arithmetic in a zone of one offset), and each cost also as ``DECIMAL(18,12)`` (``cost12``,
summed in 64 bits) while every cost fits it exactly.

JSONL and SQLite logs are *live*: :meth:`RecordStore.refresh` reads only what was appended
since (from the last whole line's byte offset, or the last rowid); a log that shrank (rotated)
is read again from the start. Other sources (Parquet, ledgers, raw responses) are read once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from .. import sql
from ..duck import _prefetch, _reraise_interrupt, connect
from ..engine import run
from ..plan import LISTED, Plan, Skipped
from ..sources import LINES_SCHEMA, Source, _lines_table

#: Columns of the records table, in order (dimensions already carry '-' for "none", as the
#: report's groups do).
RECORD_COLUMNS = (
    "rid BIGINT, source VARCHAR, line BIGINT, ts TIMESTAMPTZ, sec BIGINT, model VARCHAR, "
    "served_model VARCHAR, \"key\" VARCHAR, \"user\" VARCHAR, tags VARCHAR[], region VARCHAR, "
    "status VARCHAR, endpoint VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, "
    "cached_tokens BIGINT, reasoning_tokens BIGINT, cost DECIMAL(38,18), currency VARCHAR, "
    "estimated BOOLEAN, unpriced VARCHAR, id VARCHAR, error VARCHAR, latency_ms DOUBLE, "
    "cost12 DECIMAL(18,12)")
#: Dimensions a view can filter or group by (``tag`` is a list: a record has several).
DIMS = ("model", "key", "user", "tag", "region", "status", "endpoint")
_SUMS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")
_CHUNK = 32 << 20


@dataclass
class _Live:
    """Where a live source was read up to."""

    source: Source
    offset: int = 0  # JSONL: bytes of whole lines read; SQLite: the last rowid
    line: int = 1  # JSONL: the number of the next line
    size: int = 0  # the file's size when it was last read (a smaller one was rotated)
    mtime: float = 0.0


@dataclass
class Skips:
    """Lines the report's checks refused: how many, and the first ones by name."""

    count: int = 0
    examples: list[Skipped] = field(default_factory=list)


class RecordStore:
    """The usable records of some sources, in DuckDB (the ``records`` table).

    One connection; :attr:`lock` serialises every use of it (the web app runs queries on
    worker threads).
    """

    def __init__(self, sources: Sequence[Source], *, label: str | None = None,
                 catalogue: Any = None, default_model: str | None = None,
                 region: str | None = None) -> None:
        self.sources = list(sources)
        self.label = label or ", ".join(str(s.path) for s in self.sources)
        self.catalogue = catalogue
        self.default_model = default_model
        self.region = region
        self.db = connect()
        self.lock = threading.RLock()
        self.skips = Skips()
        self.version = 0  # bumped each time records are added
        #: The column money is summed from: ``cost12`` while every cost fits it exactly.
        self.cost_column = "cost12"
        self.generation = 0  # bumped each time records are taken out (a log rotated)
        self._rid = 0
        self.db.execute(f"CREATE TABLE records ({RECORD_COLUMNS})")
        self._live = [_Live(s) for s in self.sources if s.kind in ("log", "sqlite")]
        self.live = bool(self._live)
        fixed = [s for s in self.sources if s.kind not in ("log", "sqlite")]
        with self.lock:
            if fixed:
                self._add_fixed(fixed)
            for live in self._live:
                self._read_live(live)
            if self.live:  # DuckDB's first plan of the line checks is slow: not on a refresh
                self._add_lines(LINES_SCHEMA.empty_table())

    # --- reading -----------------------------------------------------------------------------

    def _add_fixed(self, sources: Sequence[Source]) -> None:
        collected: list[pa.Table] = []
        scan = run(sources, Plan(by=("model",), tz="UTC"), catalogue=self.catalogue,
                   default_model=self.default_model, region=self.region, collect=collected)
        scan.db.close()
        self._count_skips(scan.skipped_count, scan.skipped)
        for table in collected:
            self._insert(table)

    def _count_skips(self, count: int, listed: Sequence[Skipped]) -> None:
        self.skips.count += count
        room = LISTED - len(self.skips.examples)
        self.skips.examples += list(listed)[:max(room, 0)]

    def _read_live(self, live: _Live) -> bool:
        """Reads what was appended to a live source since the last read; True if any."""
        path = live.source.path
        try:
            stat = path.stat()
        except OSError:
            return False
        if stat.st_size == live.size and stat.st_mtime == live.mtime:
            return False
        if stat.st_size < live.size:  # rotated or truncated: read it again, from the start
            self.db.execute("DELETE FROM records WHERE source = ?", [str(path)])
            self.generation += 1
            self.version += 1
            live.offset, live.line = 0, 1
        if not (live.source.kind == "log" and live.offset == 0 and self._whole_file(live)):
            chunks = (self._jsonl_tail(live) if live.source.kind == "log"
                      else self._sqlite_tail(live))
            for chunk in _prefetch(chunks):
                self._add_lines(chunk)
        live.size, live.mtime = stat.st_size, stat.st_mtime
        return True

    def _whole_file(self, live: _Live) -> bool:
        """A whole JSONL log read by DuckDB's own reader (about four times faster than line
        by line). Only when that gives exactly what the lines would: the file ends with a
        whole line, every line is usable (else it is read as lines, to name them), and it
        did not grow while it was read. Records read so have no line number."""
        path = live.source.path
        size = path.stat().st_size
        if size == 0:
            return False
        with path.open("rb") as handle:
            handle.seek(size - 1)
            if handle.read(1) != b"\n":
                return False
        try:
            self.db.execute("CREATE OR REPLACE TEMP TABLE parsed AS " + sql.parse_sql(
                sql.json_file_sql(str(path), True), True))
        except Exception as exc:  # duckdb's own errors: a line it cannot read
            _reraise_interrupt(exc)
            return False
        try:
            bad = self.db.execute("SELECT count(*) FROM parsed WHERE problem IS NOT NULL "
                                  "AND problem <> ''").fetchall()[0][0]
            if bad or path.stat().st_size != size:
                return False
            self._insert_from("(SELECT * FROM parsed WHERE problem IS NULL)",
                              set(sql.DETAIL) | {"served_model", "unpriced"})
        finally:
            self.db.execute("DROP TABLE IF EXISTS parsed")
        live.offset = size
        live.line = _count_lines(path) + 1
        return True

    def _add_lines(self, chunk: pa.Table) -> None:
        """Parses and checks JSON lines with the report's SQL, once: unusable lines are
        counted (and the first named), usable records added."""
        self.db.register("lines_chunk", chunk)
        try:
            self.db.execute("CREATE OR REPLACE TEMP TABLE parsed AS "
                            + sql.parse_sql(sql.lines_sql("lines_chunk", True), True))
        finally:
            self.db.unregister("lines_chunk")
        bad = "problem IS NOT NULL AND problem <> ''"
        count = self.db.execute(f"SELECT count(*) FROM parsed WHERE {bad}").fetchall()[0][0]
        if count:
            room = max(LISTED - len(self.skips.examples), 0)
            rows = self.db.execute(f"SELECT source, line, problem FROM parsed WHERE {bad} "
                                   f"ORDER BY line LIMIT {room}").fetchall()
            self._count_skips(int(count), [Skipped(s, n, r) for s, n, r in rows])
        self._insert_from("(SELECT * FROM parsed WHERE problem IS NULL)",
                          set(sql.DETAIL) | {"served_model", "unpriced"})
        self.db.execute("DROP TABLE parsed")

    def _jsonl_tail(self, live: _Live) -> Iterator[pa.Table]:
        """Whole lines from ``live.offset`` on (a line still being written waits)."""
        name = str(live.source.path)
        with live.source.path.open("rb") as handle:
            handle.seek(live.offset)
            rest = b""
            while block := handle.read(_CHUNK):
                data = rest + block
                cut = data.rfind(b"\n") + 1
                rest = data[cut:]
                if cut == 0:
                    continue
                table = _lines_table(name, live.line, data[:cut])
                live.offset += cut
                live.line += table.num_rows
                yield table
            if rest.strip() and _whole_json(rest):
                # a last line without its newline that is whole: a finished file (as the
                # report reads it), not a line still being written
                live.offset += len(rest)
                live.line += 1
                yield _lines_table(name, live.line - 1, rest)

    def _sqlite_tail(self, live: _Live, batch: int = 100_000) -> Iterator[pa.Table]:
        """Rows of a SQLite log after rowid ``live.offset``."""
        path = live.source.path
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            cursor = db.execute("SELECT rowid, record FROM usage WHERE rowid > ? ORDER BY rowid",
                                (live.offset,))
            while rows := cursor.fetchmany(batch):
                numbers, texts = zip(*rows, strict=True)
                live.offset = int(numbers[-1])
                yield pa.table({"source": pa.array([str(path)] * len(rows), type=pa.string()),
                                "line": pa.array(numbers, type=pa.int64()),
                                "text": pa.array([t if isinstance(t, str) else ""
                                                  for t in texts], type=pa.string())},
                               schema=LINES_SCHEMA)
        except sqlite3.Error:
            return  # not (yet) a usage log: nothing to add; the first read named it
        finally:
            db.close()

    def _insert(self, table: pa.Table) -> None:
        """Adds usable records (the engine's, as Arrow) to ``records``."""
        if not table.num_rows:
            return
        self.db.register("new_records", table)
        try:
            self._insert_from("new_records", set(table.column_names))
        finally:
            self.db.unregister("new_records")

    def _insert_from(self, relation: str, names: set[str]) -> None:
        """Adds the usable records of ``relation`` (columns ``names``), numbering them."""

        def col(name: str, kind: str) -> str:
            return f'"{name}"' if name in names else f"NULL::{kind}"

        added = self.db.execute(f"""INSERT INTO records SELECT
  {self._rid} + row_number() OVER (), source, line, ts, epoch(ts)::BIGINT, model,
  {col('served_model', 'VARCHAR')},
  coalesce(substr(list_filter(tags, lambda t: starts_with(t, 'key='))[1], 5), '-'),
  coalesce("user", '-'), coalesce(tags, []::VARCHAR[]), coalesce(region, '-'),
  coalesce(status, '-'), coalesce(endpoint, '-'),
  {', '.join(f'coalesce({c}, 0)' for c in _SUMS)},
  cost, currency, coalesce(usage_estimated, false), {col('unpriced', 'VARCHAR')},
  {col('id', 'VARCHAR')}, {col('error', 'VARCHAR')}, {col('latency_ms', 'DOUBLE')},
  CASE WHEN abs(cost) < 1000000 THEN cost::DECIMAL(18,12) END
FROM {relation}""").fetchall()[0][0]
        if added and self.cost_column == "cost12":
            inexact = self.db.execute(
                f"SELECT count(*) FROM records WHERE rid > {self._rid} AND cost IS NOT NULL "
                "AND (cost12 IS NULL OR cost12 <> cost)").fetchall()[0][0]
            if inexact:  # a cost finer than 1e-12 (or huge): sum the exact column
                self.cost_column = "cost"
        if added:
            self._rid += int(added)
            self.version += 1

    def refresh(self) -> bool:
        """Reads what live sources gained since the last read (True if records were added
        or removed)."""
        if not self.live:
            return False
        with self.lock:
            before = self.version
            for live in self._live:
                self._read_live(live)
            return self.version != before

    @property
    def rid(self) -> int:
        """The number of the last record added."""
        return self._rid

    def close(self) -> None:
        with self.lock:
            self.db.close()




def _count_lines(path: Path) -> int:
    count = 0
    with path.open("rb") as handle:
        while block := handle.read(_CHUNK):
            count += block.count(b"\n")
    return count


def _whole_json(data: bytes) -> bool:
    try:
        json.loads(data)
    except ValueError:
        return False
    return True
