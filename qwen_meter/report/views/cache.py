"""The dashboard's cache: the loaded records kept in a DuckDB file, so that the next
``qwen-meter dashboard`` over the same sources reads only what was appended since.

The file lives in the user's cache folder (platformdirs: ``~/.cache/qwen_meter/dashboard`` on
Linux), one per set of sources (named by a hash of their kinds and paths / URLs, so a ledger's
password is never in a name). It holds the ``records`` table itself (the store queries the
file; DuckDB keeps what it reads in memory), each source's read state (``cache_parts``) and a
stamp (``cache_meta``): the cache format, the package's and DuckDB's versions, and a checksum
of every record (count and sum of row hashes, kept up to date in the same transaction as each
change). A file that is not DuckDB, one written by another version, or one whose records do
not add up to its checksum is deleted and built again: a cache can cost a reread, never a
wrong number.

Whether a source is still what was read (see :func:`log_prints`): a log's inode, and hashes
of its first block, of the block before the byte offset already read and of blocks spread
over the part already read (a rewrite of that part is a new log); a file that did not grow
but whose modification or change time moved was rewritten. SQLite logs: the first and last
record read, by rowid. Parquet and raw responses: sizes and times of the files. Ledgers: the
count and last time of their records.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..sources import Source

log = logging.getLogger("qwen_meter.dashboard")

#: Bumped when what the cache holds, or how, changes.
FORMAT = 1
_BLOCK = 1 << 16
_SAMPLES = 14


def cache_dir() -> Path:
    """Where the dashboard keeps its caches (``$XDG_CACHE_HOME/qwen_meter/dashboard``)."""
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("qwen_meter")) / "dashboard"


def cache_file(sources: Sequence[Source], folder: Path, *, default_model: str | None,
               region: str | None) -> Path:
    """The cache file of these sources read with these options."""
    ident = [[s.kind, s.url or str(s.path.resolve())] for s in sources]
    text = json.dumps([FORMAT, ident, default_model, region], ensure_ascii=False)
    return folder / f"{hashlib.sha256(text.encode()).hexdigest()[:32]}.duckdb"


def stamp() -> dict[str, str]:
    """What a cache must have been written by to be used."""
    import duckdb

    version = str(getattr(sys.modules.get("qwen_meter"), "__version__", "unknown"))
    return {"format": str(FORMAT), "qwen_meter": version, "duckdb": duckdb.__version__}


#: Cache files open in this process: DuckDB hands a second connect to the same file the same
#: database, and two stores appending to one table would count records twice.
_OPEN: set[str] = set()
_OPEN_LOCK = threading.Lock()


class InUse(OSError):
    """The cache file is already used by another store of this process."""


def release(path: Path) -> None:
    with _OPEN_LOCK:
        _OPEN.discard(str(path))


def open_file(path: Path) -> tuple[Any, bool]:
    """A connection to the cache at ``path`` and whether it holds a usable earlier load (else
    it is empty: created, or emptied after it proved foreign, corrupt or of another version).
    Raises ``duckdb.Error`` when the file cannot be had at all (another dashboard holds it),
    :class:`InUse` when this process uses it already; :func:`release` it once closed."""
    with _OPEN_LOCK:
        if str(path) in _OPEN:
            raise InUse(f"{path} is in use by another dashboard of this process")
        _OPEN.add(str(path))
    try:
        return _open_file(path)
    except BaseException:
        release(path)
        raise


def _open_file(path: Path) -> tuple[Any, bool]:
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in (1, 2):
        try:
            db = duckdb.connect(str(path))
        except duckdb.Error as exc:
            if attempt == 2 or "lock" in str(exc).lower():
                raise  # in use by another process: that one owns it
            log.warning("dashboard cache %s is not readable (%s): built again", path, exc)
            _remove(path)
            continue
        try:
            state = _state(db)
        except duckdb.Error as exc:  # a damaged block shows when the checksum reads it
            log.warning("dashboard cache %s is damaged (%s): built again", path, exc)
            state = "bad"
        if state == "bad" and attempt == 1:
            db.close()
            _remove(path)
            continue
        if state != "ok":
            db.execute("CREATE TABLE cache_meta (name VARCHAR PRIMARY KEY, value VARCHAR)")
            db.execute("CREATE TABLE cache_parts (idx INTEGER PRIMARY KEY, state VARCHAR)")
        return db, state == "ok"
    raise AssertionError("unreachable")  # pragma: no cover


def _state(db: Any) -> str:
    """'ok' (a cache to use), 'new' (an empty file) or 'bad' (to be thrown away)."""
    tables = {r[0] for r in db.execute("SELECT table_name FROM information_schema.tables "
                                       "WHERE table_schema = 'main'").fetchall()}
    if not tables:
        return "new"
    if not {"cache_meta", "cache_parts", "records"} <= tables:
        return "bad"
    meta = dict(db.execute("SELECT name, value FROM cache_meta").fetchall())
    if any(meta.get(k) != v for k, v in stamp().items()):
        log.info("dashboard cache written by another version: built again")
        return "bad"
    if meta.get("checksum") != checksum(db):
        log.warning("dashboard cache's records do not match their checksum: built again")
        return "bad"
    return "ok"


def checksum(db: Any, where: str = "true") -> str:
    """Count and sum of row hashes of the records (``where``: some of them)."""
    count, total = db.execute(f"SELECT count(*), coalesce(sum(hash(records)::HUGEINT), 0) "
                              f"FROM records WHERE {where}").fetchall()[0]
    return f"{count}:{total}"


def add_sums(a: str, b: str) -> str:
    (c1, s1), (c2, s2) = (x.split(":") for x in (a, b))
    return f"{int(c1) + int(c2)}:{int(s1) + int(s2)}"


def _remove(path: Path) -> None:
    for p in (path, path.with_name(path.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def save(db: Any, states: dict[int, dict[str, Any]], sums: str) -> None:
    """Writes each source's state, the stamp and the checksum (in the caller's transaction)."""
    db.execute("DELETE FROM cache_parts")
    db.executemany("INSERT INTO cache_parts VALUES (?, ?)",
                   [[i, json.dumps(s, ensure_ascii=False)] for i, s in states.items()])
    db.execute("DELETE FROM cache_meta")
    db.executemany("INSERT INTO cache_meta VALUES (?, ?)",
                   [[k, v] for k, v in {**stamp(), "checksum": sums}.items()])


def load(db: Any) -> dict[int, dict[str, Any]]:
    return {int(i): json.loads(s) for i, s in
            db.execute("SELECT idx, state FROM cache_parts").fetchall()}


# --- is a source still what was read ------------------------------------------------------------


def log_prints(path: Path, offset: int) -> list[str]:
    """Hashes of a JSONL log's first block, the block before ``offset`` and blocks spread
    over ``[0, offset)``."""
    if offset <= 0:
        return []
    starts = sorted({0, max(offset - _BLOCK, 0),
                     *(offset * i // (_SAMPLES + 1) for i in range(1, _SAMPLES + 1))})
    out = []
    with path.open("rb") as handle:
        for start in starts:
            handle.seek(start)
            block = handle.read(min(_BLOCK, offset - start))
            out.append(hashlib.blake2b(block, digest_size=16).hexdigest())
    return out


def sqlite_prints(path: Path, rowid: int) -> list[str]:
    """Hashes of a SQLite log's first record and of its record ``rowid`` (the last read)."""
    if rowid <= 0:
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT rowid, record FROM usage WHERE rowid = (SELECT min(rowid) "
                          "FROM usage) OR rowid = ? ORDER BY rowid", (rowid,)).fetchall()
    except sqlite3.Error:
        return ["unreadable"]
    finally:
        db.close()
    return [hashlib.blake2b(f"{r}:{t}".encode(), digest_size=16).hexdigest() for r, t in rows]


def fixed_print(source: Source) -> str | None:
    """What a source read once (Parquet, raw responses, a ledger) looks like now; None when
    it cannot be told (it is read again)."""
    try:
        if source.kind == "ledger":
            return _ledger_print(source.url)
        paths = sorted(source.path.rglob("*.parquet")) if source.path.is_dir() \
            else [source.path]
        if source.kind == "responses":  # their costs come from the price catalogue
            from ...catalogue.installed import installed_path

            paths.append(installed_path())
        items: list[list[Any]] = []
        for p in paths:
            try:
                st = p.stat()
            except FileNotFoundError:
                items.append([str(p), None])
                continue
            items.append([str(p), st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns])
        return hashlib.sha256(json.dumps(items).encode()).hexdigest()
    except Exception:  # anything unknown: read it again
        return None


def _ledger_print(url: str) -> str | None:
    query = "SELECT count(*), max(time) FROM records"
    if url.split("://", 1)[0].lower() == "sqlite":
        from ..ledger_source import sqlite_path

        db = sqlite3.connect(f"file:{sqlite_path(url)}?mode=ro", uri=True)
        try:
            row = db.execute(query).fetchone()
        finally:
            db.close()
    else:
        import adbc_driver_postgresql.dbapi as adbc

        scheme, _, rest = url.partition("://")
        with adbc.connect(f"{scheme.lower()}://{rest}") as conn, conn.cursor() as cursor:
            cursor.execute(query)
            row = cursor.fetchone()
    return json.dumps([row[0], str(row[1])]) if row else None


def file_id(path: Path) -> dict[str, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return {"ino": st.st_ino, "dev": st.st_dev, "size": st.st_size,
            "mtime": st.st_mtime_ns, "ctime": st.st_ctime_ns}
