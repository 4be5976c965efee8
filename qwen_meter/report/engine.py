"""Runs the report's SQL over the sources, streaming: each chunk of lines is parsed, checked and
folded into a small cube, so memory depends on the chunk size and the number of groups, never
on the size of the logs. Reading the next chunk overlaps the SQL of the current one.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from ..base.errors import QwenMeterError
from ..catalogue.core import Catalogue, default_catalogue
from ..catalogue.records import ModelSpec
from . import sql
from .duck import _polled, _prefetch, _reraise_interrupt, connect
from .ledger_source import ledger_chunks
from .plan import LISTED, Plan, Scan, Skipped
from .prices import PRICE_COLUMNS, price_rows, thresholds
from .quick import decoded_cube_sql, quick_file_sql
from .sources import (
    LINES_SCHEMA,
    Progress,
    ReportInputError,
    Source,
    jsonl_chunks,
    response_chunks,
    sqlite_chunks,
)

_MERGE_ROWS = 500_000

_LISTED_TYPE = pa.list_(pa.struct([("source", pa.string()), ("line", pa.int64()),
                                    ("reason", pa.string())]))


def _bound(value: dt.date | dt.datetime, tz: str) -> str:
    """A since / until bound as a TIMESTAMPTZ expression: dates are whole days in ``tz``."""
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return f"TIMESTAMPTZ {sql.quote(value.isoformat())}"
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    return f"timezone({sql.quote(tz)}, TIMESTAMP {sql.quote(value.isoformat(sep=' '))})"


class Engine:
    """One DuckDB connection, the cube of the records fed so far, and the catalogue's prices
    for the models the cube names."""

    def __init__(self, plan: Plan, catalogue: Catalogue | None = None) -> None:
        self.plan = plan
        self.catalogue = catalogue or default_catalogue()
        self.db = connect()
        self.bounds = thresholds(self.catalogue)
        self._keys: dict[int, int] = {}  # id(spec) → key
        self._names: dict[str, int | None] = {}
        columns = ("key INTEGER, region VARCHAR, bucket INTEGER, currency VARCHAR, "
                   "input BIGINT, output BIGINT, thinking BIGINT, hit BIGINT, "
                   "thinking_only BOOLEAN")
        self.db.execute("CREATE TABLE names (name VARCHAR, key INTEGER)")
        self.db.execute(f"CREATE TABLE prices ({columns})")
        self.db.execute(f"CREATE TABLE target_prices ({columns})")
        self.target_key: int | None = None
        if plan.reprice_model:
            self.target_key = self._key(self.catalogue.resolve(plan.reprice_model))
        self.scan = Scan(self.db, plan)
        self._parts: list[pa.Table] = []
        self._part_rows = 0
        #: When a list, the usable records themselves are kept here too (``UsageData.table``).
        self.collected: list[pa.Table] | None = None
        #: Read the drill-down fields too (``sql.DETAIL``: id, error, latency) from JSON lines.
        self.detail = False

    # --- prices -----------------------------------------------------------------------------

    def _key(self, spec: ModelSpec) -> int:
        key = self._keys.get(id(spec))
        if key is None:
            key = self._keys[id(spec)] = len(self._keys) + 1
            self._insert("prices", price_rows(spec, key, self.bounds))
            if self.plan.repricing:
                self._insert("target_prices", price_rows(spec, key, self.bounds,
                                                         batch=self.plan.reprice_batch))
        return key

    def _insert(self, table: str, rows: list[tuple[object, ...]]) -> None:
        if rows:  # one statement: executemany runs one per row
            marks = "(" + ", ".join("?" for _ in PRICE_COLUMNS) + ")"
            self.db.execute(f"INSERT INTO {table} VALUES {', '.join([marks] * len(rows))}",
                            [value for row in rows for value in row])

    def _resolve(self, names: Iterable[str]) -> None:
        """Adds ``names`` (models) to the ``names`` table, each resolved once."""
        new = []
        for name in sorted(set(names) - self._names.keys()):
            try:
                key: int | None = self._key(self.catalogue.resolve(name))
            except QwenMeterError:
                key = None  # unknown model: its records stay unpriced, and are listed
            self._names[name] = key
            if key is not None:
                new.append((name, key))
        if new:
            self.db.execute("INSERT INTO names VALUES " + ", ".join(["(?, ?)"] * len(new)),
                            [value for row in new for value in row])

    # --- the pass ---------------------------------------------------------------------------

    def _bounds(self) -> tuple[str | None, str | None]:
        plan = self.plan
        return (None if plan.since is None else _bound(plan.since, plan.tz),
                None if plan.until is None else _bound(plan.until, plan.tz))

    def cube_sql(self, records: str, lists: bool = False) -> str:
        """The SQL that folds ``records`` into a cube for this plan."""
        since, until = self._bounds()
        return sql.cube_sql(records, by=self.plan.by, tz=self.plan.tz, thresholds=self.bounds,
                            since=since, until=until, lists=lists)

    def _fold(self, part: pa.Table, records: str) -> None:
        """Adds a cube ``part`` of ``records`` to the cube, and names what it left out (the
        part is computed again with the lists of lines only if it left something out)."""
        scan = self.scan
        listing = len(scan.skipped) < LISTED or len(scan.unpriced) < LISTED
        if listing and "bad" not in part.column_names and self._has_outliers(part):
            part = self.db.sql(self.cube_sql(records, lists=True)).to_arrow_table()
        if self.collected is not None:
            since, until = self._bounds()
            self.collected.append(self.db.sql(
                f"SELECT * EXCLUDE (problem) FROM {records} WHERE {sql.kept_where(since, until)}"
            ).to_arrow_table())
        good = pc.is_null(part["problem"])
        bad = part.filter(pc.invert(good))
        empty = pc.equal(bad["problem"], "")
        scan.skipped_count += int(pc.sum(bad.filter(pc.invert(empty))["calls"]).as_py() or 0)
        for column, listed in (("bad", scan.skipped), ("unpriced_list", scan.unpriced)):
            room = LISTED - len(listed)
            if room <= 0 or column not in part.column_names:
                continue
            found = [item for items in part[column].to_pylist() if items for item in items
                     if item["reason"] != ""]
            found.sort(key=lambda item: (item["source"], item["line"] or 0))
            listed += [Skipped(i["source"], i["line"], i["reason"]) for i in found[:room]]
        part = part.filter(good).drop_columns(
            [c for c in ("problem", "bad", "unpriced_list") if c in part.column_names])
        self._parts.append(part)
        self._part_rows += part.num_rows
        if self._part_rows > _MERGE_ROWS:
            self._merge()

    @staticmethod
    def _has_outliers(part: pa.Table) -> bool:
        problems = pc.drop_null(part["problem"])
        return bool(pc.any(pc.not_equal(problems, "")).as_py() if len(problems) else False) \
            or bool(pc.sum(part["unpriced_calls"]).as_py())

    def _merge(self) -> None:
        keys = sql.cube_keys(self.plan.by)
        parts = pa.concat_tables(self._parts, promote_options="permissive")
        self.db.register("cube_parts", parts)
        merged = self.db.sql(sql.merge_sql("cube_parts", keys)).to_arrow_table()
        self.db.unregister("cube_parts")
        self._parts = [merged]
        self._part_rows = merged.num_rows

    def feed_lines(self, chunks: Iterable[pa.Table]) -> None:
        """Parses, checks and folds JSON-line chunks ``(source, line, text)``; a chunk with an
        ``id`` column too (a ledger's) has its listed records named by id, not line."""
        for chunk in chunks:
            listed = len(self.scan.skipped), len(self.scan.unpriced)
            self.db.register("lines_chunk", chunk)
            records = f"({sql.parse_sql(sql.lines_sql('lines_chunk', self.detail), self.detail)})"
            self._fold(self.db.sql(self.cube_sql(records)).to_arrow_table(), records)
            self.db.unregister("lines_chunk")
            if "id" in chunk.column_names:
                self._name_by_id(chunk, *listed)

    def _name_by_id(self, chunk: pa.Table, skipped: int, unpriced: int) -> None:
        """A ledger's lines are numbered by the read, which means nothing to its reader: the
        records of ``chunk`` listed since (``skipped``, ``unpriced``) say their id instead, as
        the records of a JSONL file read whole do."""
        first = chunk["line"][0].as_py() if chunk.num_rows else 0
        ids = chunk["id"]
        for listed, start in ((self.scan.skipped, skipped), (self.scan.unpriced, unpriced)):
            for i in range(start, len(listed)):
                item = listed[i]
                if item.line is not None and 0 <= item.line - first < len(ids):
                    listed[i] = Skipped(item.source, None,
                                        f"{item.reason} (id {ids[item.line - first]})")

    def feed_jsonl(self, path: Path, bar: Progress) -> None:
        """A JSONL log: read by DuckDB's own JSON reader in one pass, first with the quick
        checks (:mod:`.quick`), then — if a record is one they cannot vouch for — with the
        exact ones. A file DuckDB cannot read (a malformed line) or with an unusable line is
        read again as numbered lines, so that each of those is named with its line; records
        without a cost are named by their id."""
        size = path.stat().st_size
        # Kept records must be decoded each; a cube's keys can be decoded once per row.
        raw = self.collected is None
        records = f"({quick_file_sql(str(path), raw=raw)})"
        query = self.cube_sql(records)
        part = self._file_cube(decoded_cube_sql(query) if raw else query, path, size, bar)
        if not isinstance(part, pa.Table) or self._problems(part):
            records = f"({sql.parse_sql(sql.json_file_sql(str(path)))})"
            if part != "malformed":
                part = self._file_cube(self.cube_sql(records), path, size, bar)
        if not isinstance(part, pa.Table) or self._problems(part):
            bar.advance(-bar.seen, path.name)
            bar.seen = 0
            self.feed_lines(_prefetch(jsonl_chunks(path, bar)))
            return
        bar.advance(size - bar.seen, path.name)
        bar.seen = 0
        room = LISTED - len(self.scan.unpriced)
        if room > 0 and pc.sum(part["unpriced_calls"]).as_py():
            since, until = self._bounds()
            rows = self.db.execute(sql.unpriced_ids_sql(str(path), since, until, room)
                                   ).fetchall()
            self.scan.unpriced += [Skipped(str(path), None, f"{m}: {r} (id {i})")
                                   for i, m, r in rows]
        self._fold(part.append_column("bad", pa.nulls(part.num_rows, _LISTED_TYPE))
                   .append_column("unpriced_list", pa.nulls(part.num_rows, _LISTED_TYPE)),
                   records)

    def _file_cube(self, query: str, path: Path, size: int, bar: Progress
                   ) -> pa.Table | str:
        """The cube ``query`` makes of a whole file (DuckDB's progress moving the bar), or
        why there is none: ``malformed`` (a line that is not JSON) or ``refused`` (a field
        the reader could not make into its type)."""
        bar.advance(-bar.seen, path.name)
        bar.seen = 0
        try:
            with _polled(self.db, lambda share: bar.advance(int(size * share) - bar.seen,
                                                            path.name, seen=True)):
                return self.db.sql(query).to_arrow_table()
        except Exception as exc:  # duckdb's own errors: a line it cannot read
            _reraise_interrupt(exc)
            if isinstance(exc, QwenMeterError):
                raise
            return "malformed" if "malformed json" in str(exc).lower() else "refused"

    @staticmethod
    def _problems(part: pa.Table) -> bool:
        """Whether a cube holds records with a problem (blank lines aside)."""
        problems = pc.drop_null(part["problem"])
        return bool(len(problems)) and bool(pc.any(pc.not_equal(problems, "")).as_py())

    def feed_parquet(self, paths: Sequence[str]) -> None:
        """Checks and folds Parquet records (DuckDB streams the files itself)."""
        files = ", ".join(sql.quote(p) for p in paths)
        try:
            self.db.execute("CREATE OR REPLACE TEMP VIEW records_parquet AS " + sql.check_sql(
                f"read_parquet([{files}], hive_partitioning = true, union_by_name = true)"))
            part = self.db.sql(self.cube_sql("records_parquet")).to_arrow_table()
        except Exception as exc:
            _reraise_interrupt(exc)
            if isinstance(exc, QwenMeterError):
                raise
            raise ReportInputError(f"cannot read Parquet {', '.join(paths)}: {exc}") from exc
        self._fold(part, "records_parquet")

    def finish(self) -> Scan:
        """The cube, priced, as view ``priced`` of the connection; counts and lists in the
        scan."""
        if not self._parts:
            self.feed_lines([LINES_SCHEMA.empty_table()])
        self._merge()
        self.db.register("cube_final", self._parts[0])
        self.db.execute("CREATE OR REPLACE TABLE cube AS SELECT * FROM cube_final")
        self.db.unregister("cube_final")
        self._parts = []
        self._resolve(row[0] for row in self.db.execute(
            "SELECT DISTINCT model FROM cube WHERE model IS NOT NULL").fetchall())
        plan = self.plan
        self.db.execute("CREATE OR REPLACE VIEW priced AS " + sql.priced_sql(
            "cube", repricing=plan.repricing, target_model=self.target_key,
            target_region=plan.reprice_region))
        row = self.db.execute("SELECT coalesce(sum(calls), 0), coalesce(sum(unpriced_calls), 0) "
                              "FROM cube").fetchall()[0]
        self.scan.records, self.scan.unpriced_count = int(row[0]), int(row[1])
        return self.scan


def parquet_files(source: Source) -> list[str]:
    """A Parquet file, or every ``*.parquet`` under a folder (the compact layout)."""
    if source.path.is_dir():
        files = sorted(str(p) for p in source.path.rglob("*.parquet"))
        if not files:
            raise ReportInputError(f"{source.path}: no .parquet files in this folder")
        return files
    return [str(source.path)]


def run(sources: Sequence[Source], plan: Plan, *, catalogue: Catalogue | None = None,
        default_model: str | None = None, region: str | None = None,
        progress: bool = False, collect: list[pa.Table] | None = None) -> Scan:
    """One pass over ``sources`` for ``plan`` (``collect``: a list to keep the records in)."""
    engine = Engine(plan, catalogue)
    engine.collected = collect
    total = sum(s.path.stat().st_size for s in sources
                if s.kind != "ledger" and s.path.is_file())
    bar = Progress(total, progress)
    try:
        for source in sources:
            if source.kind == "parquet":
                engine.feed_parquet(parquet_files(source))
                bar.advance(source.path.stat().st_size if source.path.is_file() else 0,
                            source.path.name)
            elif source.kind == "ledger":
                engine.feed_lines(_prefetch(ledger_chunks(source.url, bar, since=plan.since,
                                                          until=plan.until)))
            elif source.kind == "sqlite":
                engine.feed_lines(_prefetch(sqlite_chunks(source.path, bar)))
            elif source.kind == "responses":
                engine.feed_lines(response_chunks(source.path, bar, default_model=default_model,
                                                  region=region, catalogue=catalogue))
            else:
                engine.feed_jsonl(source.path, bar)
        return engine.finish()
    finally:
        bar.close()
