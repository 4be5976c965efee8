"""The report as one SQL script, and usage logs as date-partitioned Parquet.

``qwen-meter log compact`` writes the records that pass the report's checks as
``OUT/date=YYYY-MM-DD/part-<uuid>.parquet`` (hive layout, UTC dates): DuckDB, Spark, Trino,
polars and pandas read the folder as one table. ``qwen-meter report --sql`` prints the script
that computes the report from that folder — the catalogue's prices inlined as small tables —
so a team whose logs outgrow one machine runs the same report on its own engine.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..base.words import plural
from ..catalogue.core import Catalogue
from . import sql
from .duck import _prefetch
from .engine import Engine
from .ledger_source import is_ledger_url, ledger_chunks
from .plan import Plan, Skipped
from .sources import Progress, ReportInputError, Source, jsonl_chunks, sniff, sqlite_chunks

#: The columns of a compacted record (the ``date`` partition column comes from the path).
RECORD_COLUMNS = ("source", "line", "time", "ts", "model", "served_model", "region",
                  "endpoint", "status", "user", "tags", *sql.TOKEN_COLUMNS, "usage_estimated",
                  "cost", "currency", "unpriced")


def _values(db: Any, table: str) -> str:
    rows = db.execute(f"SELECT * FROM {table}").fetchall()
    columns = [d[0] for d in db.execute(f"SELECT * FROM {table} LIMIT 0").description]
    if not rows:
        types = db.execute(f"SELECT column_name, data_type FROM information_schema.columns "
                           f"WHERE table_name = {sql.quote(table)}").fetchall()
        return (f"CREATE TEMP TABLE {table} ("
                + ", ".join(f'"{n}" {t}' for n, t in types) + ");")

    def literal(value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int):
            return str(value)
        return sql.quote(str(value))

    body = ",\n  ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
    return (f"CREATE TEMP TABLE {table} AS SELECT * FROM (VALUES\n  {body}\n) "
            f"AS t({', '.join(columns)});")


def report_sql(dataset: str, *, by: Sequence[str] = ("model",), tz: str = "UTC",
               reprice_as: str | None = None, reprice_region: str | None = None,
               reprice_batch: bool = False, catalogue: Catalogue | None = None) -> str:
    """The DuckDB script that computes the report's breakdown from ``dataset`` (a folder of
    ``log compact``), with every price it needs inlined."""
    plan = Plan(by=tuple(by), tz=tz, reprice_model=reprice_as, reprice_region=reprice_region,
                reprice_batch=reprice_batch)
    engine = Engine(plan, catalogue)
    try:
        names = []
        for spec in engine.catalogue:
            names += [n for n in (spec.name, *spec.aliases, spec.snapshot) if n]
        engine._resolve(names)
        pattern = dataset.rstrip("/") + "/**/*.parquet" if not dataset.endswith(".parquet") \
            else dataset
        records = (f"read_parquet({sql.quote(pattern)}, hive_partitioning = true, "
                   "union_by_name = true)")
        keys = [*by, "currency"]
        script = [
            "-- The qwen_meter report as SQL (DuckDB dialect), over the Parquet layout of",
            "-- `qwen-meter log compact` (date=YYYY-MM-DD/part-*.parquet). Prices are the",
            "-- catalogue's, in femto-units (1e-15) per token, by request-size bucket.",
            "SET TimeZone = 'UTC';",
            _values(engine.db, "names"), _values(engine.db, "prices"),
            _values(engine.db, "target_prices"),
            f"CREATE TEMP VIEW records AS\n{sql.check_sql(records)};",
            "CREATE TEMP TABLE cube AS SELECT * EXCLUDE (problem) FROM (\n"
            + engine.cube_sql("records") + "\n) WHERE problem IS NULL;",
            "CREATE TEMP VIEW priced AS\n" + sql.priced_sql(
                "cube", repricing=plan.repricing, target_model=engine.target_key,
                target_region=reprice_region) + ";",
            sql.sections_sql("priced", keys, repriced=plan.repricing) + ";"]
        return "\n\n".join(script)
    finally:
        engine.db.close()


def compact(sources: Sequence[str | Path], out: str | Path, *,
            progress: bool = False) -> tuple[int, int, list[Skipped]]:
    """Writes the usable records of ``sources`` (JSONL / SQLite logs, ledger URLs) as Parquet under
    ``out`` (``date=YYYY-MM-DD/part-<uuid>.parquet``, UTC dates; new files beside any there).

    Returns (records written, lines skipped, the first skipped lines).
    """
    folder = Path(out)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportInputError(f"cannot create {folder}: {exc.strerror or exc}") from None
    found = [Source(Path(), "ledger", url=str(s)) if is_ledger_url(str(s))
             else Source(Path(s), sniff(Path(s)) if Path(s).is_file() else "missing")
             for s in sources]
    for source in found:
        if source.kind == "ledger":
            continue
        if not source.path.is_file():
            raise ReportInputError(f"{source.path}: no such file")
        if source.kind not in ("log", "sqlite"):
            raise ReportInputError(f"{source.path}: not a qwen_meter log ({source.kind}); "
                                   "compact reads JSONL and SQLite logs")
    engine = Engine(Plan(by=("model",), tz="UTC"))
    db = engine.db
    bar = Progress(sum(s.path.stat().st_size for s in found if s.kind != "ledger"), progress)
    written = skipped = 0
    listed: list[Skipped] = []
    columns = ", ".join(f'"{c}"' for c in RECORD_COLUMNS)
    target = sql.quote(str(folder))
    try:
        for source in found:
            chunks = ledger_chunks(source.url, bar) if source.kind == "ledger" \
                else sqlite_chunks(source.path, bar) if source.kind == "sqlite" \
                else jsonl_chunks(source.path, bar)
            for chunk in _prefetch(chunks):
                db.register("lines_chunk", chunk)
                db.execute("CREATE OR REPLACE TEMP TABLE compact_chunk AS "
                           + sql.parse_sql(sql.lines_sql("lines_chunk")))
                db.unregister("lines_chunk")
                bad = db.execute("SELECT source, line, problem FROM compact_chunk WHERE "
                                 "problem <> '' ORDER BY line").fetchall()
                skipped += len(bad)
                listed += [Skipped(s, n, p) for s, n, p in bad[:max(0, 100 - len(listed))]]
                count = db.execute("SELECT count(*) FROM compact_chunk WHERE problem IS NULL"
                                   ).fetchall()[0][0]
                if count:
                    db.execute(
                        f"COPY (SELECT {columns}, coalesce(strftime(ts, '%Y-%m-%d'), 'unknown') "
                        f"AS date FROM compact_chunk WHERE problem IS NULL) TO {target} "
                        "(FORMAT parquet, PARTITION_BY (date), APPEND, "
                        "FILENAME_PATTERN 'part-{uuid}')")
                written += int(count)
    finally:
        bar.close()
        db.close()
    return written, skipped, listed


def print_skipped(skipped: int, listed: list[Skipped], stream: Any = None) -> None:
    """One line per skipped line (the first 20), for the CLI."""
    from .safe import plain

    stream = stream or sys.stderr
    for item in listed[:20]:
        stream.write(plain(f"skipped {item.source}:{item.line}: {item.reason}") + "\n")
    if skipped > 20:
        stream.write(f"... {plural(skipped - 20, 'more line')} skipped\n")
