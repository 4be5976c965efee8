"""The quick reading of JSONL logs (report/quick.py) accepts a record only when the exact
checks would, with the same values: a wrong-typed field is still named with its line and
reason, and a valid but unusual record counts the same as on the exact road (SQLite logs are
always read the exact way, so they are the reference)."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("pandas")

import qwen_meter as qm
from qwen_meter.report import build_report, load_usage

GOOD = {"model": "qwen-plus", "time": "2026-11-01T10:00:00+00:00", "region": "cn",
        "status": "ok", "prompt_tokens": 100, "completion_tokens": 20, "cached_tokens": 10,
        "reasoning_tokens": 0, "estimated_prompt_tokens": 90, "usage_estimated": False,
        "cost": "0.0003", "currency": "CNY", "tags": ["team=a"], "user": "u1"}

#: One field made wrong, the line otherwise valid JSON (DuckDB's reader reads it).
WRONG = [
    ({"prompt_tokens": "100"}, "bad prompt_tokens"),
    ({"prompt_tokens": True}, "bad prompt_tokens"),
    ({"completion_tokens": 1.5}, "bad completion_tokens"),
    ({"cached_tokens": -1}, "bad cached_tokens"),
    ({"reasoning_tokens": [1]}, "bad reasoning_tokens"),
    ({"estimated_prompt_tokens": 9_000_000_000_000_001}, "bad estimated_prompt_tokens"),
    ({"estimated_prompt_tokens": 1e300}, "bad estimated_prompt_tokens"),
    ({"model": 5}, "bad model"),
    ({"model": "   "}, "no model"),
    ({"model": None}, "no model"),
    ({"user": 5}, "bad user"),
    ({"currency": ["CNY"]}, "bad currency"),
    ({"usage_estimated": "yes"}, "bad usage_estimated"),
    ({"usage_estimated": 1}, "bad usage_estimated"),
    ({"tags": "team=a"}, "bad tags"),
    ({"tags": {"team": "a"}}, "bad tags"),
    ({"cost": True}, "bad cost"),
    ({"cost": "-0.1"}, "bad cost"),
    ({"cost": [1]}, "bad cost"),
    ({"cost": "1e999999"}, "bad cost"),
    ({"time": "yesterday"}, "bad time"),
    ({"time": 5}, "bad time"),
    ({"cached_tokens": 101}, "bad cached_tokens (more than prompt_tokens)"),
]

#: Valid records the quick checks cannot vouch for: the exact road counts them.
UNUSUAL = [
    {"prompt_tokens": 100.0, "completion_tokens": 2e1},
    {"prompt_tokens": None, "cached_tokens": None, "reasoning_tokens": None},
    {"model": "qwen-\"plus\"", "user": "back\\slash", "currency": "C\\u004eY"},
    {"cost": 0.0003},
    {"cost": "3e-4"},
    {"cost": 3e-4},
    {"usage_estimated": None, "tags": None, "user": None},
    {"tags": ["team=a", 1, None]},
]


def _lines(tmp_path: Path, lines: list[str]) -> tuple[Path, Path]:
    """The lines as a JSONL log and as a SQLite log (read the exact way)."""
    jsonl = tmp_path / "log.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    db_path = tmp_path / "log.db"
    qm.SQLiteLog(db_path).close()
    with sqlite3.connect(db_path) as db:
        for i, line in enumerate(lines):
            db.execute("INSERT INTO usage (id, record) VALUES (?, ?)", (str(i), line))
    return jsonl, db_path


@pytest.mark.parametrize(("change", "reason"), WRONG, ids=[json.dumps(c) for c, _ in WRONG])
def test_a_wrong_typed_field_is_named_not_counted(tmp_path, change, reason):
    lines = [json.dumps(GOOD), json.dumps({**GOOD, **change}), json.dumps(GOOD)]
    jsonl, db_path = _lines(tmp_path, lines)
    for path in (jsonl, db_path):
        report = build_report(load_usage(path, tz="UTC"), by=["model"])
        assert report.records == 2, path
        assert [(s.line, s.reason) for s in report.skipped] == [(2, reason)], path
        assert report.skipped_count == 1


@pytest.mark.parametrize("change", UNUSUAL, ids=[json.dumps(c) for c in UNUSUAL])
def test_an_unusual_valid_record_counts_as_on_the_exact_road(tmp_path, change):
    lines = [json.dumps(GOOD), json.dumps({**GOOD, **change}), json.dumps(GOOD)]
    jsonl, db_path = _lines(tmp_path, lines)
    quick, exact = (build_report(load_usage(p, tz="UTC"), by=["model", "user", "tag"])
                    for p in (jsonl, db_path))
    assert quick.records == exact.records == 3
    assert quick.skipped == exact.skipped == []
    columns = [c for c in exact.breakdown.columns if c != "prompt_estimate_error"]
    assert quick.breakdown[columns].to_dict("records") == \
        exact.breakdown[columns].to_dict("records")
    assert quick.totals.to_dict("records") == exact.totals.to_dict("records")
    assert quick.summary == exact.summary


def test_kept_records_are_decoded_as_on_the_exact_road(tmp_path):
    lines = [json.dumps({**GOOD, **change}) for change in [{}, *UNUSUAL[:4]]]
    jsonl, db_path = _lines(tmp_path, lines)
    quick, exact = (load_usage(p, tz="UTC").table.drop_columns(["source", "line"]).to_pylist()
                    for p in (jsonl, db_path))
    assert len(quick) == 5
    assert quick == exact
    assert {r["model"] for r in quick} == {"qwen-plus", 'qwen-"plus"'}


def test_a_plain_log_is_read_once_the_quick_way(tmp_path, monkeypatch):
    """A log of ordinary records — unpriced ones (no cost, no currency), tags, users — is
    read in one query, and its unpriced records are named by id (the file's road)."""
    from qwen_meter.report.engine import Engine

    unpriced = {**GOOD, "model": "mystery-model", "cost": None, "currency": None,
                "unpriced": "unknown model", "id": "abc"}
    lines = [json.dumps(GOOD), json.dumps(unpriced), json.dumps({**GOOD, "tags": []})]
    jsonl, _ = _lines(tmp_path, lines)
    reads: list[str] = []
    real = Engine._file_cube

    def counted(self, query, *args):  # type: ignore[no-untyped-def]
        reads.append(query)
        return real(self, query, *args)

    monkeypatch.setattr(Engine, "_file_cube", counted)
    report = build_report(load_usage(jsonl, tz="UTC"), by=["model", "tag"])
    assert len(reads) == 1
    assert report.records == 3 and report.unpriced_count == 1
    assert [(s.line, s.reason) for s in report.unpriced] == [
        (None, "mystery-model: unknown model (id abc)")]
