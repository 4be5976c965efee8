"""Readers: usage logs and raw API responses into one Arrow table, with what was skipped.

* qwen_meter's JSONL logs are parsed by Arrow's multithreaded JSON reader (a file with a
  malformed line falls back to line-by-line parsing, which names the bad lines);
* qwen_meter's SQLite logs are read from their ``record`` column;
* JSONL files of raw responses — OpenAI-compatible chat completions, final stream chunks with
  usage, embeddings, native DashScope responses — are priced with the catalogue as they are read.

Costs are exact decimals (``decimal128(30, 12)``); a record that cannot be priced keeps a null
cost and is listed, never counted as free.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sqlite3
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj

from ..catalogue import Catalogue, default_catalogue
from ..errors import QwenMeterError
from ..pricing import cost as price_usage
from ..usage import Usage

MONEY = pa.decimal128(30, 12)  # headroom for sums and differences within 38 digits
INTEGER_COLUMNS = ("prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
                   "image_tokens", "audio_tokens", "estimated_prompt_tokens")
STRING_COLUMNS = ("id", "time", "model", "served_model", "region", "endpoint", "status",
                  "cost", "currency", "unpriced", "user")
#: The columns a report reads (times stay ISO 8601 UTC strings: they sort and slice as dates).
LOG_SCHEMA = pa.schema(
    [(c, pa.string()) for c in STRING_COLUMNS]
    + [(c, pa.int64()) for c in INTEGER_COLUMNS]
    + [("usage_estimated", pa.bool_()), ("tags", pa.list_(pa.string()))])


@dataclass(frozen=True)
class Skipped:
    """A line (or record) the report could not use, or could not price."""

    source: str
    line: int | None
    reason: str


@dataclass
class UsageData:
    """Usage records as one Arrow table, and the lines that were skipped or left unpriced."""

    table: pa.Table
    skipped: list[Skipped] = field(default_factory=list)
    unpriced: list[Skipped] = field(default_factory=list)

    def to_pandas(self) -> Any:
        """The records as a pandas DataFrame (costs as ``decimal.Decimal``)."""
        return self.table.to_pandas()

    def __len__(self) -> int:
        return int(self.table.num_rows)


class ReportInputError(QwenMeterError):
    """A usage source that cannot be read at all (missing file, not JSONL / SQLite)."""


class _Progress:
    """A one-line progress bar on stderr, for big files on a terminal."""

    def __init__(self, total: int, label: str, enabled: bool) -> None:
        self.total, self.label = max(total, 1), label
        self.enabled = enabled and total > 8 << 20
        self.done = 0
        self.last = -1

    def advance(self, amount: int) -> None:
        if not self.enabled:
            return
        self.done += amount
        percent = min(100, self.done * 100 // self.total)
        if percent != self.last:
            self.last = percent
            bar = "#" * (percent // 4)
            sys.stderr.write(f"\r{self.label}: [{bar:<25}] {percent:3d}%")
            if percent == 100:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _is_log_record(first: dict[str, Any]) -> bool:
    return "version" in first and "model" in first and "prompt_tokens" in first \
        and "choices" not in first and "output" not in first


def _first_record(path: Path) -> dict[str, Any] | None:
    with path.open("rb") as handle:
        for line in handle:
            if line.strip():
                try:
                    value = json.loads(line)
                except ValueError:
                    return None
                return value if isinstance(value, dict) else None
    return None


def _empty() -> pa.Table:
    return LOG_SCHEMA.empty_table()


def _with_money(table: pa.Table) -> pa.Table:
    """Cost as an exact decimal column."""
    return table.set_column(table.schema.get_field_index("cost"), "cost",
                            pc.cast(table["cost"], MONEY))


def _conform(rows: Sequence[dict[str, Any]]) -> pa.Table:
    """Rows (dicts) as a table of the log schema; unknown keys dropped, missing ones null."""
    columns = {name: [row.get(name) for row in rows] for name in LOG_SCHEMA.names}
    columns["tags"] = [list(t) if isinstance(t, (list, tuple)) else [] for t in columns["tags"]]
    return pa.table(columns, schema=LOG_SCHEMA)


def _valid_log_row(row: Any) -> str | None:
    if not isinstance(row, dict):
        return "not a JSON object"
    if not isinstance(row.get("model"), str):
        return "no model"
    for name in ("prompt_tokens", "completion_tokens"):
        value = row.get(name)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            return f"bad {name}"
    if row.get("cost") is not None:
        try:
            Decimal(str(row["cost"]))
        except ArithmeticError:
            return "bad cost"
    return None


def _log_rows(lines: Iterable[tuple[int, bytes]], source: str, skipped: list[Skipped]
              ) -> Iterator[dict[str, Any]]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            skipped.append(Skipped(source, number, "not JSON"))
            continue
        problem = _valid_log_row(row)
        if problem:
            skipped.append(Skipped(source, number, problem))
            continue
        yield row


def _numbered(path: Path, progress: _Progress) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            progress.advance(len(line))
            yield number, line


_DUCK_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN",
               pa.list_(pa.string()): "VARCHAR[]"}


def _read_fast(path: Path) -> pa.Table:
    """The whole file through DuckDB's JSON reader when installed (it reads only the
    report's columns), else Arrow's; raises if any line is malformed."""
    try:
        import duckdb
    except ImportError:
        options = pj.ParseOptions(explicit_schema=LOG_SCHEMA, unexpected_field_behavior="ignore")
        return pj.read_json(path, read_options=pj.ReadOptions(block_size=16 << 20),
                            parse_options=options)
    columns = "{" + ", ".join(f"'{f.name}': '{_DUCK_TYPES[f.type]}'" for f in LOG_SCHEMA) + "}"
    quoted = str(path).replace("'", "''")
    try:
        with duckdb.connect() as db:
            table = db.sql(f"SELECT * FROM read_json('{quoted}', format='newline_delimited', "
                           f"columns={columns})").to_arrow_table()
    except duckdb.Error as exc:
        raise pa.ArrowInvalid(str(exc)) from exc
    return table.cast(LOG_SCHEMA)


def read_log_jsonl(path: Path, *, progress: bool = False) -> UsageData:
    """A qwen_meter JSONL usage log."""
    size = path.stat().st_size
    bar = _Progress(size, path.name, progress)
    try:
        table = _read_fast(path)
        bar.advance(size)
        if table.num_rows == 0 or pc.any(pc.is_null(table["model"])).as_py():
            raise pa.ArrowInvalid("records without a model")
        return UsageData(_with_money(table))
    except (pa.ArrowInvalid, pa.ArrowTypeError, ArithmeticError):
        pass  # a malformed line somewhere: parse line by line and say which
    skipped: list[Skipped] = []
    bar = _Progress(size, path.name, progress)
    rows = list(_log_rows(_numbered(path, bar), str(path), skipped))
    return UsageData(_with_money(_conform(rows) if rows else _empty()), skipped)


def read_log_sqlite(path: Path) -> UsageData:
    """A qwen_meter SQLite usage log."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            raw = db.execute("SELECT rowid, record FROM usage").fetchall()
        finally:
            db.close()
    except sqlite3.Error as exc:
        raise ReportInputError(f"{path}: not a qwen_meter SQLite log ({exc})") from exc
    skipped: list[Skipped] = []
    rows = list(_log_rows(((n, r.encode()) for n, r in raw), str(path), skipped))
    return UsageData(_with_money(_conform(rows) if rows else _empty()), skipped)


def _response_row(value: dict[str, Any], default_model: str | None, region: str | None,
                  catalogue: Catalogue) -> tuple[dict[str, Any] | None, str | None]:
    """(row, problem) for one raw API response."""
    usage = value.get("usage")
    if not usage:
        return None, "no usage (a stream chunk before the last?)"
    model = value.get("model") or default_model
    if not isinstance(model, str):
        return None, "no model (pass a default model for native responses)"
    try:
        parsed = Usage.parse(usage)
    except QwenMeterError as exc:
        return None, str(exc)
    created = value.get("created")
    time = dt.datetime.fromtimestamp(created, dt.timezone.utc).isoformat() \
        if isinstance(created, (int, float)) else None
    endpoint = "embeddings" if value.get("object") == "list" else "chat"
    row: dict[str, Any] = {
        "model": model, "served_model": value.get("model"), "time": time, "status": "ok",
        "endpoint": endpoint, "request_id": value.get("id") or value.get("request_id"),
        "prompt_tokens": parsed.prompt_tokens, "completion_tokens": parsed.completion_tokens,
        "total_tokens": parsed.total_tokens, "cached_tokens": parsed.cached_tokens,
        "reasoning_tokens": parsed.reasoning_tokens, "image_tokens": parsed.image_tokens,
        "audio_tokens": parsed.audio_tokens, "usage_estimated": False, "tags": []}
    try:
        priced = price_usage(parsed, catalogue.resolve(model), region=region)
    except QwenMeterError as exc:
        row.update(currency=None, cost=None, unpriced=str(exc), region=region)
        return row, None
    row.update(region=priced.region, currency=priced.currency, unpriced=priced.unpriced or None,
               cost=None if priced.amount is None else f"{priced.amount:f}")
    return row, None


def read_responses(path: Path, *, default_model: str | None = None, region: str | None = None,
                   catalogue: Catalogue | None = None, progress: bool = False) -> UsageData:
    """A JSONL file of raw responses, priced with the catalogue."""
    catalogue = catalogue or default_catalogue()
    skipped: list[Skipped] = []
    rows = []
    bar = _Progress(path.stat().st_size, path.name, progress)
    for number, line in _numbered(path, bar):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            skipped.append(Skipped(str(path), number, "not JSON"))
            continue
        if not isinstance(value, dict):
            skipped.append(Skipped(str(path), number, "not a JSON object"))
            continue
        row, problem = _response_row(value, default_model, region, catalogue)
        if row is None:
            skipped.append(Skipped(str(path), number, problem or "unreadable"))
            continue
        row["id"] = f"{path.name}:{number}"
        rows.append(row)
    data = UsageData(_with_money(_conform(rows) if rows else _empty()), skipped)
    return data


def load_usage(sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], *,
               since: dt.date | dt.datetime | None = None,
               until: dt.date | dt.datetime | None = None,
               default_model: str | None = None, region: str | None = None,
               catalogue: Catalogue | None = None, progress: bool = False) -> UsageData:
    """Usage from qwen_meter logs (JSONL / SQLite) and raw-response JSONL files, combined.

    ``since`` / ``until`` keep records in ``[since, until)`` (dates are whole UTC days).
    Unpriced records are listed in ``unpriced`` with their source and line.
    """
    paths = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    parts: list[UsageData] = []
    for source in paths:
        path = Path(source)
        if not path.is_file():
            raise ReportInputError(f"{path}: no such file")
        if path.suffix in (".db", ".sqlite", ".sqlite3"):
            parts.append(read_log_sqlite(path))
            continue
        first = _first_record(path)
        if first is not None and not _is_log_record(first):
            parts.append(read_responses(path, default_model=default_model, region=region,
                                        catalogue=catalogue, progress=progress))
        else:
            parts.append(read_log_jsonl(path, progress=progress))
    table = pa.concat_tables([p.table for p in parts]) if parts else _with_money(_empty())
    table = _between(table, since, until)
    data = UsageData(table, [s for p in parts for s in p.skipped])
    data.unpriced = _unpriced(table)
    return data


def _bound(value: dt.date | dt.datetime) -> str:
    """A date or time as the UTC ISO string record times are compared with."""
    if not isinstance(value, dt.datetime):
        value = dt.datetime(value.year, value.month, value.day)
    if value.tzinfo:
        value = value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value.isoformat()


def _between(table: pa.Table, since: Any, until: Any) -> pa.Table:
    if since is not None:
        table = table.filter(pc.greater_equal(table["time"], _bound(since)))
    if until is not None:
        table = table.filter(pc.less(table["time"], _bound(until)))
    return table


def _unpriced(table: pa.Table) -> list[Skipped]:
    if table.num_rows == 0 or not pc.any(pc.is_null(table["cost"])).as_py():
        return []
    missing = table.filter(pc.and_(pc.is_null(table["cost"]),
                                   pc.not_equal(pc.fill_null(table["status"], "ok"), "error")))
    return [Skipped(str(row["id"]), None, row["unpriced"] or "no cost")
            for row in missing.select(["id", "unpriced"]).to_pylist()[:1000]]
