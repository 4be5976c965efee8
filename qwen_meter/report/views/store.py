"""The records behind the dashboard, loaded once into DuckDB with the report's own checks.

Each source is read by the report engine (:mod:`..engine`): the same parse, the same checks,
the same skipped lines — so every number equals ``qwen-meter report``'s. The usable records
go into one ``records`` table (with the drill-down fields: id, error, latency), with what makes
the views' scans cheap: each time as epoch seconds (``sec``: local days and hours are integer
arithmetic in a zone of one offset), and each cost also as ``DECIMAL(18,12)`` (``cost12``,
summed in 64 bits) while every cost fits it exactly.

JSONL and SQLite logs are *live*: :meth:`RecordStore.refresh` reads only what was appended
since (from the last whole line's byte offset, or the last rowid); a log that was rotated,
truncated or rewritten (see :mod:`.cache` for how that is told) is read again from the start.
Other sources (Parquet, ledgers, raw responses) are read once. With a cache, the records table
lives in the cache's DuckDB file and each source's read state is saved beside it, so the next
run starts where this one stopped.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from .. import sql
from ..duck import _prefetch, _reraise_interrupt, connect
from ..engine import run
from ..plan import LISTED, Plan, Skipped
from ..sources import LINES_SCHEMA, Source
from . import cache as cache_mod
from . import tails
from .parts import Part, Skips

log = logging.getLogger("qwen_meter.dashboard")

#: Columns of the records table, in order (dimensions already carry '-' for "none", as the
#: report's groups do; ``src``: the index of the source the record came from).
RECORD_COLUMNS = (
    "rid BIGINT, source VARCHAR, line BIGINT, ts TIMESTAMPTZ, sec BIGINT, model VARCHAR, "
    "served_model VARCHAR, \"key\" VARCHAR, \"user\" VARCHAR, tags VARCHAR[], region VARCHAR, "
    "status VARCHAR, endpoint VARCHAR, prompt_tokens BIGINT, completion_tokens BIGINT, "
    "cached_tokens BIGINT, reasoning_tokens BIGINT, cost DECIMAL(38,18), currency VARCHAR, "
    "estimated BOOLEAN, unpriced VARCHAR, id VARCHAR, error VARCHAR, latency_ms DOUBLE, "
    "cost12 DECIMAL(18,12), src INTEGER")
#: Dimensions a view can filter or group by (``tag`` is a list: a record has several).
DIMS = ("model", "key", "user", "tag", "region", "status", "endpoint")
_SUMS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens")


class RecordStore:
    """The usable records of some sources, in DuckDB (the ``records`` table).

    One connection; :attr:`lock` serialises every use of it (the web app runs queries on
    worker threads). ``cache``: a folder (or True: the user's cache folder) to keep the
    records in between runs (see :mod:`.cache`); None or False: in memory only.
    ``progress``: a dict the load reports into (``done`` and ``total`` bytes, ``source``).
    """

    def __init__(self, sources: Sequence[Source], *, label: str | None = None,
                 catalogue: Any = None, default_model: str | None = None,
                 region: str | None = None, cache: bool | str | os.PathLike[str] | None = None,
                 progress: dict[str, Any] | None = None) -> None:
        self.sources = list(sources)
        self.label = label or ", ".join(str(s.path) for s in self.sources)
        self.catalogue = catalogue
        self.default_model = default_model
        self.region = region
        self.progress = progress if progress is not None else {}
        self.lock = threading.RLock()
        self.version = 0  # bumped each time records are added
        self.generation = 0  # bumped each time records are taken out (a log rotated)
        self._parts = [Part(s, i) for i, s in enumerate(self.sources)]
        self.live = any(p.live for p in self._parts)
        self.cache_path: Path | None = None
        self.warm = False  # True when an earlier run's records were used
        self.db = self._open(cache)
        self.warm_start = self.warm  # an earlier run's records were used
        self.lines_read = 0  # lines (or SQLite rows) this store read and checked
        self._sums = str(self.db.execute("SELECT value FROM cache_meta WHERE name = "
                                         "'checksum'").fetchall()[0][0]) if self.warm else "0:0"
        self._rid = int(self.db.execute("SELECT coalesce(max(rid), 0) FROM records")
                        .fetchall()[0][0])
        #: The dimensions' value counts saved with the cached records (rid counted up to,
        #: counts), when they were counted over exactly those records (see :meth:`save_dims`).
        self.saved_dims = self._saved_dims() if self.warm else None
        #: The column money is summed from: ``cost12`` while every cost fits it exactly.
        self.cost_column = "cost" if self._inexact(0) else "cost12"
        # what there is to read: a cached log's part past its offset (a log found rewritten
        # is read whole, past this total: the page's percentage stops at 100)
        self.progress.update(done=0, total=sum(
            max(p.source.path.stat().st_size - (p.offset if p.source.kind == "log" else 0), 0)
            for p in self._parts if p.source.kind != "ledger" and p.source.path.is_file()))
        try:
            with self.lock:
                self._changes(self._load)
                if self.live:  # DuckDB's first plan of the line checks is slow: not later
                    self._add_lines(LINES_SCHEMA.empty_table(), self._parts[0])
        except BaseException:
            self.close()  # the cache file is free for the next try
            raise
        self.progress["ready"] = True  # ``done``: the bytes this load read (0: all cached)

    # --- the cache ---------------------------------------------------------------------------

    def _open(self, cache: bool | str | os.PathLike[str] | None) -> Any:
        db = None
        if cache and self.catalogue is None:  # a caller's catalogue cannot be stamped
            import duckdb

            folder = cache_mod.cache_dir() if cache is True else Path(cache)
            path = cache_mod.cache_file(self.sources, folder, default_model=self.default_model,
                                        region=self.region)
            try:
                db, self.warm = cache_mod.open_file(path)
                self.cache_path = path
            except (duckdb.Error, OSError) as exc:  # held by another dashboard, read-only ...
                log.warning("dashboard cache %s not used (%s): reading the sources", path, exc)
        if db is None:
            db = connect()
        else:
            db.execute("SET TimeZone = 'UTC'")
            db.execute("SET enable_progress_bar = true")
            db.execute("SET enable_progress_bar_print = false")
        if self.warm:
            for index, state in cache_mod.load(db).items():
                if index < len(self._parts):
                    self._parts[index].restore(state)
        else:
            db.execute(f"CREATE TABLE records ({RECORD_COLUMNS})")
        return db

    def _changes(self, work: Callable[[], None]) -> bool:
        """Runs ``work``, then saves the cache's state with the records' checksum in one
        transaction; True if records were added or removed. (Not ``work`` in the same
        transaction: a line DuckDB's reader refuses would abort it. A run that stops before
        the save leaves records that do not match the saved checksum: the next run builds
        the cache again.)"""
        before = self.version
        work()
        if self.cache_path is not None and (self.version != before or not self.warm):
            self.db.begin()
            try:
                cache_mod.save(self.db, {p.index: p.state() for p in self._parts}, self._sums)
                self.db.commit()
            except BaseException:
                self.db.rollback()
                raise
            self.warm = True
        return self.version != before

    def _saved_dims(self) -> tuple[int, dict[str, dict[str, int]]] | None:
        rows = self.db.execute("SELECT value FROM cache_meta WHERE name = 'dims'").fetchall()
        if not rows:
            return None
        saved = json.loads(rows[0][0])
        if (saved["sums"], saved["rid"]) != (self._sums, self._rid):
            return None  # counted over other records than the cache holds now
        return int(saved["rid"]), saved["counts"]

    def save_dims(self, rid: int, counts: dict[str, dict[str, int]]) -> None:
        """Keeps the dimensions' counts over the records up to ``rid`` in the cache (so a
        restart counts only new records), if those are exactly the records it holds."""
        with self.lock:
            if self.cache_path is None or rid != self._rid:
                return
            value = json.dumps({"sums": self._sums, "rid": rid, "counts": counts},
                               ensure_ascii=False)
            self.db.execute("INSERT OR REPLACE INTO cache_meta VALUES ('dims', ?)", [value])

    @property
    def skips(self) -> Skips:
        examples = [e for p in self._parts for e in p.examples][:LISTED]
        return Skips(sum(p.skipped for p in self._parts), examples)

    # --- reading -----------------------------------------------------------------------------

    def _load(self) -> None:
        for part in self._parts:
            if not part.live:
                self._read_fixed(part)
        for part in self._parts:
            if part.live:
                self._read_live(part, first=True)

    def _read_fixed(self, part: Part) -> None:
        now = cache_mod.fixed_print(part.source) if self.cache_path is not None else None
        if part.size >= 0 and now is not None and now == part.fixed:
            return  # as cached
        self._drop(part)
        self.progress["source"] = part.source.name
        collected: list[pa.Table] = []
        scan = run([part.source], Plan(by=("model",), tz="UTC"), catalogue=self.catalogue,
                   default_model=self.default_model, region=self.region, collect=collected)
        scan.db.close()
        self._count_skips(part, scan.skipped_count, scan.skipped)
        self.lines_read += scan.skipped_count + sum(t.num_rows for t in collected)
        for table in collected:
            self._insert(table, part)
        part.fixed, part.size = now, 0

    def _drop(self, part: Part) -> None:
        """Forgets what was read of a source (it changed under us)."""
        if part.size < 0:
            return
        self.db.execute(f"DELETE FROM records WHERE src = {part.index}")
        if self.cache_path is not None:
            self._sums = cache_mod.checksum(self.db)
        self.generation += 1
        self.version += 1
        fresh = Part(part.source, part.index)
        part.__dict__.update(fresh.__dict__)

    def _count_skips(self, part: Part, count: int, listed: Sequence[Skipped]) -> None:
        part.skipped += count
        room = LISTED - len(part.examples)
        part.examples += list(listed)[:max(room, 0)]

    def _stale(self, part: Part, ident: dict[str, int]) -> bool:
        """Whether what was read of a live source is no longer in it (rotated, truncated,
        rewritten)."""
        path = part.source.path
        if (ident["ino"], ident["size"] < part.offset) != (part.ino, False):
            return True
        if part.source.kind == "sqlite":
            return cache_mod.sqlite_prints(path, part.offset) != part.prints
        if ident["size"] == part.size and (ident["mtime"], ident["ctime"]) != (
                part.mtime, part.ctime):
            return True  # written to without growing: rewritten
        return cache_mod.log_prints(path, part.offset) != part.prints

    def _read_live(self, part: Part, first: bool = False) -> bool:
        """Reads what was appended to a live source since the last read; True if any."""
        path = part.source.path
        ident = cache_mod.file_id(path)
        if ident is None:
            return False
        if not first and (ident["size"], ident["mtime"], ident["ctime"]) == (
                part.size, part.mtime, part.ctime):
            return False
        if part.size >= 0 and self._stale(part, ident):
            self._drop(part)
        self.progress["source"] = part.source.name
        if not (part.source.kind == "log" and part.offset == 0 and self._whole_file(part)):
            chunks = (self._jsonl_tail(part) if part.source.kind == "log"
                      else self._sqlite_tail(part))
            for chunk in _prefetch(chunks):
                self._add_lines(chunk, part)
        part.size, part.mtime, part.ctime, part.ino = (
            ident["size"], ident["mtime"], ident["ctime"], ident["ino"])
        # what was read, as it looks now: the next read (a refresh, or the next run's) checks
        # the source still holds it
        part.prints = (cache_mod.log_prints(path, part.offset) if part.source.kind == "log"
                       else cache_mod.sqlite_prints(path, part.offset))
        return True

    def _whole_file(self, part: Part) -> bool:
        """A whole JSONL log read by DuckDB's own reader (about four times faster than line
        by line). Only when that gives exactly what the lines would: the file ends with a
        whole line, every line is usable (else it is read as lines, to name them), and it
        did not grow while it was read. Records read so have no line number."""
        path = part.source.path
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
                              set(sql.DETAIL) | {"served_model", "unpriced"}, part)
        finally:
            self.db.execute("DROP TABLE IF EXISTS parsed")
        part.offset = size
        part.line = tails.count_lines(path) + 1
        self.lines_read += part.line - 1
        self.progress["done"] = self.progress.get("done", 0) + size
        return True

    def _add_lines(self, chunk: pa.Table, part: Part) -> None:
        """Parses and checks JSON lines with the report's SQL, once: unusable lines are
        counted (and the first named), usable records added."""
        self.lines_read += chunk.num_rows
        self.db.register("lines_chunk", chunk)
        try:
            self.db.execute("CREATE OR REPLACE TEMP TABLE parsed AS "
                            + sql.parse_sql(sql.lines_sql("lines_chunk", True), True))
        finally:
            self.db.unregister("lines_chunk")
        bad = "problem IS NOT NULL AND problem <> ''"
        count = self.db.execute(f"SELECT count(*) FROM parsed WHERE {bad}").fetchall()[0][0]
        if count:
            room = max(LISTED - len(part.examples), 0)
            rows = self.db.execute(f"SELECT source, line, problem FROM parsed WHERE {bad} "
                                   f"ORDER BY line LIMIT {room}").fetchall()
            self._count_skips(part, int(count), [Skipped(s, n, r) for s, n, r in rows])
        self._insert_from("(SELECT * FROM parsed WHERE problem IS NULL)",
                          set(sql.DETAIL) | {"served_model", "unpriced"}, part)
        self.db.execute("DROP TABLE parsed")

    def _jsonl_tail(self, part: Part) -> Iterator[pa.Table]:
        for table, used in tails.jsonl_tail(part.source.path, part.offset, part.line):
            part.offset += used
            part.line += table.num_rows
            self.progress["done"] = self.progress.get("done", 0) + used
            yield table

    def _sqlite_tail(self, part: Part) -> Iterator[pa.Table]:
        for table, rowid in tails.sqlite_tail(part.source.path, part.offset):
            part.offset = rowid
            yield table

    def _insert(self, table: pa.Table, part: Part) -> None:
        """Adds usable records (the engine's, as Arrow) to ``records``."""
        if not table.num_rows:
            return
        self.db.register("new_records", table)
        try:
            self._insert_from("new_records", set(table.column_names), part)
        finally:
            self.db.unregister("new_records")

    def _inexact(self, after: int) -> bool:
        """Whether a cost of the records after ``after`` does not fit ``cost12`` exactly."""
        return bool(self.db.execute(
            f"SELECT count(*) FROM records WHERE rid > {after} AND cost IS NOT NULL "
            "AND (cost12 IS NULL OR cost12 <> cost)").fetchall()[0][0])

    def _insert_from(self, relation: str, names: set[str], part: Part) -> None:
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
  CASE WHEN abs(cost) < 1000000 THEN cost::DECIMAL(18,12) END, {part.index}
FROM {relation}""").fetchall()[0][0]
        if added and self.cost_column == "cost12" and self._inexact(self._rid):
            self.cost_column = "cost"  # a cost finer than 1e-12 (or huge): the exact column
        if added:
            if self.cache_path is not None:
                self._sums = cache_mod.add_sums(
                    self._sums, cache_mod.checksum(self.db, f"rid > {self._rid}"))
            self._rid += int(added)
            self.version += 1

    def refresh(self) -> bool:
        """Reads what live sources gained since the last read (True if records were added
        or removed)."""
        if not self.live:
            return False

        def read() -> None:
            for part in self._parts:
                if part.live:
                    self._read_live(part)

        with self.lock:
            return self._changes(read)

    @property
    def rid(self) -> int:
        """The number of the last record added."""
        return self._rid

    def close(self) -> None:
        with self.lock:
            self.db.close()
            if self.cache_path is not None:
                cache_mod.release(self.cache_path)
