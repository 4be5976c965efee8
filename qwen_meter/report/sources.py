"""Usage sources as streams of JSON-line chunks ``(source, line, text)`` in Arrow, so the SQL of
:mod:`.sql` checks every record the same way whatever the file was.

* JSONL logs: read in blocks and cut at newlines with numpy (no per-line Python); a block
  that is not valid UTF-8 is the only one looked at line by line;
* SQLite logs: the ``record`` column, fetched in batches;
* JSONL files of raw API responses: turned into log records as they are read (the only
  per-line Python here — such files are small: they are saved responses, not logs);
* Parquet (``qwen-meter log compact``): DuckDB reads it directly (see :mod:`.engine`);
* ledgers (``postgresql://…``, ``sqlite:///…``): the ``record`` column (see :mod:`.ledger_source`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import sqlite3
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ..base.errors import QwenMeterError
from ..billing.usage import Usage
from ..catalogue.core import Catalogue, default_catalogue
from .sql import SKIP

CHUNK_BYTES = 32 << 20
LINES_SCHEMA = pa.schema([("source", pa.string()), ("line", pa.int64()), ("text", pa.string())])
SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SNIFF_LINES = 200


class ReportInputError(QwenMeterError):
    """A usage source that cannot be read at all (missing file, not JSONL / SQLite / Parquet)."""


@dataclass(frozen=True)
class Source:
    """One input and how it is read: ``log`` (JSONL), ``sqlite``, ``responses``, ``parquet``
    (a file, or a folder of ``date=YYYY-MM-DD/part-*.parquet``) or ``ledger`` (``url``: a
    ``postgresql://`` or ``sqlite:///`` ledger; kept out of the repr, it may hold a password)."""

    path: Path
    kind: str
    url: str = field(default="", repr=False)

    @property
    def name(self) -> str:
        """How errors and skipped lines name the source (a ledger's URL, password masked)."""
        if self.url:
            from ..ledger.common import mask_url

            return mask_url(self.url)
        return str(self.path)

    def __repr__(self) -> str:
        return f"Source({self.name!r}, kind={self.kind!r})"


class Progress:
    """A progress bar on stderr that moves as chunks are read (a terminal only, by default)."""

    def __init__(self, total: int, enabled: bool, stream: Any = None) -> None:
        self.total = total  # a ledger adds its size when it is read
        self.enabled = enabled
        self.stream = stream or sys.stderr
        self.done = 0
        self.last = -1
        #: Bytes counted so far of a file read in one query (taken back if it is read again).
        self.seen = 0

    def advance(self, amount: int, label: str, seen: bool = False) -> None:
        if seen:
            self.seen += amount
        if not self.enabled or not amount:
            return
        self.done += amount
        percent = min(100, self.done * 100 // max(self.total, 1))
        if percent != self.last:
            self.last = percent
            bar = "#" * (percent // 4)
            self.stream.write(f"\rreading {label}: [{bar:<25}] {percent:3d}%")
            self.stream.flush()

    def close(self) -> None:
        if self.enabled and self.last >= 0:
            self.stream.write("\n")
            self.stream.flush()


def _looks_like(value: Any) -> str | None:
    """'log' or 'responses' for a line that says which it is; None for one that does not
    (``{}``, a bad line): one such line must not decide how the whole file is read."""
    if not isinstance(value, dict):
        return None
    if "usage" in value and "prompt_tokens" not in value:
        return "responses"
    if "model" in value and ("prompt_tokens" in value or "version" in value):
        return "log"
    return None


def sniff(path: Path) -> str:
    """How to read ``path``: by suffix, else by the first lines that say what they are.

    A text file none of whose first lines is a usage record or an API response (a saved
    request, a config file, a pretty-printed JSON document) is refused, naming the file and
    why: read as a log it would give a report of nothing, or of records made up of requests.
    """
    if path.is_dir() or path.suffix == ".parquet":
        return "parquet"
    if path.suffix in SQLITE_SUFFIXES:
        return "sqlite"
    why: str | None = None
    with path.open("rb") as handle:
        head = handle.read(4)
        if head == b"SQLi":
            return "sqlite"
        if head == b"PAR1":
            return "parquet"
        handle.seek(0)
        for number, line in enumerate(handle, start=1):
            if number > _SNIFF_LINES:
                break
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError:
                why = why or f"line {number} is not JSON on its own"
                continue
            kind = _looks_like(value)
            if kind:
                return kind
            why = why or f"line {number} {_not_a_record(value)}"
    if why is not None:
        raise ReportInputError(
            f"{path}: not a usage log — no line among its first {_SNIFF_LINES} is a usage "
            "record (an object with model and prompt_tokens) or an API response with usage; "
            f"{why}")
    return "log"  # empty: a log nothing was written to yet


def _not_a_record(value: Any) -> str:
    """Why a JSON line that parsed is neither a log record nor a response, for the error."""
    if not isinstance(value, dict):
        return f"is a JSON {type(value).__name__.replace('str', 'string')}, not an object"
    if "messages" in value or "input" in value:
        return "is a request (it has messages / input), not its usage"
    keys = ", ".join(sorted(map(str, value))[:6]) or "no keys"
    return f"is an object with {keys}"


def _lines_table(source: str, first: int, data: bytes) -> pa.Table:
    """The lines of ``data`` (whole lines; newline kept, JSON ignores it), numbered from
    ``first``."""
    array = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(array == 10) + 1
    if len(ends) == 0 or ends[-1] != len(data):
        ends = np.append(ends, len(data))
    offsets = np.concatenate([[0], ends]).astype(np.int32)
    count = len(offsets) - 1
    text = pa.StringArray.from_buffers(count, pa.py_buffer(offsets), pa.py_buffer(data))
    try:
        text.validate(full=True)
    except pa.ArrowInvalid:
        text = _utf8_checked(data, offsets)
    numbers = pa.array(np.arange(first, first + count, dtype=np.int64))
    sources = pa.DictionaryArray.from_arrays(pa.array(np.zeros(count, dtype=np.int32)),
                                             pa.array([source])).cast(pa.string())
    return pa.Table.from_arrays([sources, numbers, text], schema=LINES_SCHEMA)


def _utf8_checked(data: bytes, offsets: np.ndarray) -> pa.StringArray:
    """The lines, with each one that is not UTF-8 replaced by a line that reads as 'not JSON'
    (decoding line by line only in a block that has such a line)."""
    out = []
    for start, end in itertools.pairwise(offsets.tolist()):
        try:
            out.append(data[start:end].decode("utf-8"))
        except UnicodeDecodeError:
            out.append(json.dumps({SKIP: "not UTF-8"}))
    return pa.array(out, type=pa.string())


def jsonl_chunks(path: Path, progress: Progress, chunk_bytes: int | None = None
                 ) -> Iterator[pa.Table]:
    """A JSONL file as line tables of about ``chunk_bytes`` (:data:`CHUNK_BYTES`) each."""
    chunk_bytes = chunk_bytes or CHUNK_BYTES
    name = str(path)
    line = 1
    rest = b""
    with path.open("rb") as handle:
        while True:
            block = handle.read(chunk_bytes)
            progress.advance(len(block), path.name)
            if not block:
                break
            data = rest + block if rest else block
            cut = data.rfind(b"\n") + 1
            if cut == 0:
                rest = data
                continue
            rest = data[cut:]
            table = _lines_table(name, line, data[:cut])
            line += table.num_rows
            yield table
    if rest:
        yield _lines_table(name, line, rest)


def sqlite_chunks(path: Path, progress: Progress, batch: int = 100_000) -> Iterator[pa.Table]:
    """The ``record`` column of a qwen_meter SQLite log, in batches (line = rowid)."""
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise ReportInputError(f"{path}: cannot open ({exc})") from exc
    try:
        total = db.execute("SELECT count(*) FROM usage").fetchone()[0]
        cursor = db.execute("SELECT rowid, record FROM usage ORDER BY rowid")
        size = path.stat().st_size
        while rows := cursor.fetchmany(batch):
            progress.advance(size * len(rows) // max(total, 1), path.name)
            numbers, texts = zip(*rows, strict=True)
            yield pa.table({"source": pa.array([str(path)] * len(rows), type=pa.string()),
                            "line": pa.array(numbers, type=pa.int64()),
                            "text": pa.array([t if isinstance(t, str) else "" for t in texts],
                                             type=pa.string())}, schema=LINES_SCHEMA)
    except sqlite3.Error as exc:
        raise ReportInputError(f"{path}: not a qwen_meter SQLite log ({exc})") from exc
    finally:
        db.close()


def _response_record(value: Any, default_model: str | None, region: str | None,
                     catalogue: Catalogue) -> dict[str, Any] | str:
    """A log record for one raw API response, or why there is none."""
    from ..billing.pricing import cost as price_usage

    if not isinstance(value, dict):
        return "not a JSON object"
    usage = value.get("usage")
    if not usage:
        return "no usage (a stream chunk before the last?)"
    model = value.get("model") or default_model
    if not isinstance(model, str):
        return "no model (pass a default model for native responses)"
    try:
        parsed = Usage.parse(usage)
    except QwenMeterError as exc:
        return str(exc)
    created = value.get("created")
    time = dt.datetime.fromtimestamp(created, dt.timezone.utc).isoformat() \
        if isinstance(created, (int, float)) and not isinstance(created, bool) else None
    record: dict[str, Any] = {
        "model": model, "served_model": value.get("model"), "time": time, "status": "ok",
        "endpoint": "embeddings" if value.get("object") == "list" else "chat",
        "id": value.get("id") or value.get("request_id"),
        "prompt_tokens": parsed.prompt_tokens, "completion_tokens": parsed.completion_tokens,
        "cached_tokens": parsed.cached_tokens, "reasoning_tokens": parsed.reasoning_tokens,
        "image_tokens": parsed.image_tokens, "audio_tokens": parsed.audio_tokens,
        "usage_estimated": False, "tags": [], "region": region}
    try:
        priced = price_usage(parsed, catalogue.resolve(model), region=region)
    except QwenMeterError as exc:
        record["unpriced"] = str(exc)
        return record
    record.update(region=priced.region, currency=priced.currency,
                  unpriced=priced.unpriced or None,
                  cost=None if priced.amount is None else f"{priced.amount:f}")
    return record


def response_chunks(path: Path, progress: Progress, *, default_model: str | None,
                    region: str | None, catalogue: Catalogue | None,
                    batch: int = 50_000) -> Iterator[pa.Table]:
    """Raw responses as log-record lines; a response without usage stays a bad line, with
    its reason, so it is named like any other."""
    catalogue = catalogue or default_catalogue()
    numbers: list[int] = []
    texts: list[str] = []

    def flush() -> pa.Table:
        table = pa.table({"source": pa.array([str(path)] * len(numbers), type=pa.string()),
                          "line": pa.array(numbers, type=pa.int64()),
                          "text": pa.array(texts, type=pa.string())}, schema=LINES_SCHEMA)
        numbers.clear()
        texts.clear()
        return table

    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            progress.advance(len(raw), path.name)
            if not raw.strip():
                continue
            try:
                value = json.loads(raw)
            except ValueError:
                text = json.dumps({SKIP: "not JSON"})
            else:
                record = _response_record(value, default_model, region, catalogue)
                text = json.dumps(record, ensure_ascii=False) if isinstance(record, dict) \
                    else json.dumps({SKIP: record})
            numbers.append(number)
            texts.append(text)
            if len(numbers) >= batch:
                yield flush()
    if numbers:
        yield flush()
