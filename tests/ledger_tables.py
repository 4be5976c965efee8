"""The ledger's ``records`` table (PostgreSQL and SQLite), written from real UsageRecords, for
the report tests — the layout of qwen_meter.ledger's backends: one row per record, a few
columns to filter on, and ``record`` = ``UsageRecord.to_json()``."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import qwen_meter as qm

PG_TABLE = """CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY, time TIMESTAMPTZ, model TEXT, status TEXT, key_name TEXT,
    user_name TEXT, team TEXT, region TEXT, currency TEXT, cost NUMERIC,
    prompt_tokens BIGINT, completion_tokens BIGINT, tags TEXT[], record TEXT NOT NULL)"""
SQLITE_TABLE = """CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY, time TEXT, model TEXT, status TEXT, key_name TEXT,
    user_name TEXT, team TEXT, region TEXT, currency TEXT, cost TEXT,
    prompt_tokens INTEGER, completion_tokens INTEGER, tags TEXT, record TEXT NOT NULL)"""


def _row(r: qm.UsageRecord, tags: object) -> tuple[object, ...]:
    return (r.id, r.time, r.model, r.status, r.metadata.get("key"), r.user,
            r.metadata.get("team"), r.region, r.currency, r.cost, r.prompt_tokens,
            r.completion_tokens, tags, r.to_json())


def write_postgres(url: str, records: Sequence[qm.UsageRecord]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(PG_TABLE)
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO records VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, "
                            "%s, %s, %s, %s, %s) ON CONFLICT (id) DO NOTHING",
                            [_row(r, list(r.tags)) for r in records])


def write_sqlite(path: Path, records: Sequence[qm.UsageRecord]) -> None:
    db = sqlite3.connect(path)
    with db:
        db.execute(SQLITE_TABLE)
        db.executemany("INSERT OR IGNORE INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                       "?, ?, ?)",
                       [_row(r, json.dumps(list(r.tags), ensure_ascii=False)) for r in records])
    db.close()
