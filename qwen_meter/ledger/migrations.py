"""Schema migrations: plain versioned SQL files, applied when a ledger opens.

The files are ``data/ledger/<dialect>/NNNN_<what>.sql`` (dialect ``sqlite`` or
``postgresql``); ``NNNN`` is the schema version the file brings the database to. Table
``schema_migrations(version, applied_at)`` holds one row per file applied.

Why plain SQL and no migration tool: the schema is small, the two dialects differ only in
types, and a DBA can read (and run) exactly what the code will run. Each backend applies
what is missing **inside one lock** (PostgreSQL: ``pg_advisory_xact_lock`` in the migrating
transaction; SQLite: ``BEGIN IMMEDIATE``), so replicas starting together apply each file
once: the others wait, then find the versions written. A database whose schema is newer than
every file this code ships is refused (an older qwen_meter must not write a schema it does
not know).
"""

from __future__ import annotations

import re
from functools import cache

from ..base.data import data_dir
from .base import LedgerError

#: pg_advisory_xact_lock key of migrations (any constant: "qwen_meter ledger migrate").
PG_MIGRATE_LOCK = 0x71_6D_6C_6D
#: pg_advisory_lock key of recovery (meter.recovery).
PG_RECOVERY_LOCK = 0x71_6D_6C_72

CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                "applied_at TEXT NOT NULL)")
PG_CREATE_TABLE = ("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                   "applied_at TIMESTAMPTZ NOT NULL DEFAULT now())")

_FILE = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


@cache
def migrations(dialect: str) -> tuple[tuple[int, str], ...]:
    """``(version, sql)`` of every migration file of ``dialect``, in version order."""
    folder = data_dir() / "ledger" / dialect
    found: dict[int, str] = {}
    for path in sorted(folder.glob("*.sql")):
        match = _FILE.match(path.name)
        if match is None:
            raise LedgerError(f"migration file {path} is not named NNNN_<what>.sql")
        version = int(match.group(1))
        if version in found:
            raise LedgerError(f"two migration files for version {version} in {folder}")
        found[version] = path.read_text(encoding="utf-8")
    if not found:
        raise LedgerError(f"no ledger migrations in {folder}: the installation is incomplete")
    return tuple(sorted(found.items()))


def latest(dialect: str) -> int:
    """The schema version this code brings a database to."""
    return migrations(dialect)[-1][0]


def to_apply(dialect: str, applied: set[int], where: str) -> list[tuple[int, str]]:
    """The migrations a database at ``applied`` versions still needs (refusing a newer one)."""
    newest = latest(dialect)
    ahead = sorted(v for v in applied if v > newest)
    if ahead:
        raise LedgerError(f"ledger {where}: its schema is version {ahead[-1]}, newer than this "
                          f"qwen_meter knows (up to {newest}): upgrade qwen_meter on every "
                          "replica before using it")
    return [(v, sql) for v, sql in migrations(dialect) if v not in applied]
