"""What was appended to a live log since a point: whole JSONL lines from a byte offset, SQLite
rows after a rowid — as the line tables the report's SQL checks."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa

from ..sources import LINES_SCHEMA, _lines_table

_CHUNK = 32 << 20


def jsonl_tail(path: Path, offset: int, line: int) -> Iterator[tuple[pa.Table, int]]:
    """Whole lines from byte ``offset`` on (numbered from ``line``), each table with the bytes
    it used (a line still being written waits)."""
    name = str(path)
    with path.open("rb") as handle:
        handle.seek(offset)
        rest = b""
        while block := handle.read(_CHUNK):
            data = rest + block
            cut = data.rfind(b"\n") + 1
            rest = data[cut:]
            if cut == 0:
                continue
            table = _lines_table(name, line, data[:cut])
            line += table.num_rows
            yield table, cut
        if rest.strip() and _whole_json(rest):
            # a last line without its newline that is whole: a finished file (as the
            # report reads it), not a line still being written
            yield _lines_table(name, line, rest), len(rest)


def sqlite_tail(path: Path, after: int, batch: int = 100_000
                ) -> Iterator[tuple[pa.Table, int]]:
    """Rows of a SQLite log after rowid ``after``, each table with its last rowid."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        cursor = db.execute("SELECT rowid, record FROM usage WHERE rowid > ? ORDER BY rowid",
                            (after,))
        while rows := cursor.fetchmany(batch):
            numbers, texts = zip(*rows, strict=True)
            yield pa.table({"source": pa.array([str(path)] * len(rows), type=pa.string()),
                            "line": pa.array(numbers, type=pa.int64()),
                            "text": pa.array([t if isinstance(t, str) else ""
                                              for t in texts], type=pa.string())},
                           schema=LINES_SCHEMA), int(numbers[-1])
    except sqlite3.Error:
        return  # not (yet) a usage log: nothing to add; the first read named it
    finally:
        db.close()


def count_lines(path: Path) -> int:
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
