"""The records behind the dashboard, loaded once into DuckDB with the report's own checks.

Each source is read by the report engine (:mod:`..engine`): the same parse, the same checks,
the same skipped lines — so every number equals ``qwen-meter report``'s. The usable records
go into one ``records`` table (with the drill-down fields: id, error, latency) and an hourly
``cube`` of it grouped by every dimension, which the views aggregate instead of the records
when the asked range is made of whole hours.

JSONL and SQLite logs are *live*: :meth:`RecordStore.refresh` reads only what was appended
since (from the last whole line's byte offset, or the last rowid); a log that shrank (rotated)
is read again from the start. Other sources (Parquet, ledgers, raw responses) are read once.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from ..duck import connect
from ..engine import Engine, run
from ..plan import Plan, Skipped
from ..sources import LINES_SCHEMA, Source, _lines_table

#: Columns of the records table, in order (dimensions already carry '-' for "none", as the
#: report's groups do).
RECORD_COLUMNS = (
    "rid BIGINT, source VARCHAR, line BIGINT, ts TIMESTAMPTZ, model VARCHAR, "
    "served_model VARCHAR, \"key\" VARCHAR, \"user\" VARCHAR, tags VARCHAR[], region VARCHAR, "
    "status VARCHAR, endpoint VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, "
    "cached_tokens BIGINT, reasoning_tokens BIGINT, cost DECIMAL(38,18), currency VARCHAR, "
    "estimated BOOLEAN, unpriced VARCHAR, id VARCHAR, error VARCHAR, latency_ms DOUBLE")
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
    """The usable records of some sources, in DuckDB (``records`` and ``cube`` tables).

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
            self._build_cube()

    # --- reading -----------------------------------------------------------------------------

    def _engine(self) -> Engine:
        engine = Engine(Plan(by=("model",), tz="UTC"), self.catalogue)
        engine.collected = []
        engine.detail = True
        return engine

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
        room = 1000 - len(self.skips.examples)
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
            live.offset, live.line = 0, 1
        engine = self._engine()
        try:
            if live.source.kind == "log":
                engine.feed_lines(self._jsonl_tail(live))
            else:
                engine.feed_lines(self._sqlite_tail(live))
            self._count_skips(engine.scan.skipped_count, engine.scan.skipped)
            for table in engine.collected or []:
                self._insert(table)
        finally:
            engine.db.close()
        live.size, live.mtime = stat.st_size, stat.st_mtime
        return True

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
        """Adds usable records (engine output) to ``records``, numbering them."""
        if not table.num_rows:
            return
        names = set(table.column_names)

        def col(name: str, kind: str) -> str:
            return f'"{name}"' if name in names else f"NULL::{kind}"

        self.db.register("new_records", table)
        self.db.execute(f"""INSERT INTO records SELECT
  {self._rid} + row_number() OVER (), source, line, ts, model, {col('served_model', 'VARCHAR')},
  coalesce(substr(list_filter(tags, lambda t: starts_with(t, 'key='))[1], 5), '-'),
  coalesce("user", '-'), coalesce(tags, []::VARCHAR[]), coalesce(region, '-'),
  coalesce(status, '-'), coalesce(endpoint, '-'),
  {', '.join(f'coalesce({c}, 0)' for c in _SUMS)},
  cost, currency, coalesce(usage_estimated, false), {col('unpriced', 'VARCHAR')},
  {col('id', 'VARCHAR')}, {col('error', 'VARCHAR')}, {col('latency_ms', 'DOUBLE')}
FROM new_records""")
        self.db.unregister("new_records")
        self._rid += table.num_rows
        self.version += 1

    # --- the cube ------------------------------------------------------------------------------

    _CUBE = f"""SELECT date_trunc('hour', ts) AS ts, model, "key", "user", tags, region, status,
  endpoint, currency, estimated, count(*) AS calls,
  {', '.join(f'sum({c})::BIGINT AS {c}' for c in _SUMS)}, sum(cost) AS cost
FROM records WHERE ts IS NOT NULL AND rid > $from GROUP BY ALL"""

    def _build_cube(self) -> None:
        self.db.execute("CREATE OR REPLACE TABLE cube AS "
                        + self._CUBE.replace("$from", "0"))
        self._cubed = self._rid

    def refresh(self) -> bool:
        """Reads what live sources gained since the last read (True if records were added
        or removed); the cube gets the new records' groups."""
        if not self.live:
            return False
        with self.lock:
            before, rows = self.version, self._rid
            rotated = False
            for live in self._live:
                size = live.size
                changed = self._read_live(live)
                rotated = rotated or (changed and live.size < size)
            if rotated:
                self._build_cube()
            elif self._rid > rows:
                self.db.execute("INSERT INTO cube " + self._CUBE.replace("$from",
                                                                          str(self._cubed)))
                self._cubed = self._rid
            return self.version != before or rotated

    def close(self) -> None:
        with self.lock:
            self.db.close()


