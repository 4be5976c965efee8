"""Bad input that used to come out raw or be taken silently: each now a typed error naming
where, or (a log line) skipped and named — never summed."""

from __future__ import annotations

import base64
import json
import sqlite3
import warnings

import pytest

import qwen_meter as qm

IMAGE = "qwen-vl-max"


def _image(url: str) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "what is this"},
                                         {"type": "image_url", "image_url": {"url": url}}]}]


@pytest.mark.parametrize("role", [["user"], {"a": 1}, ("user",)])
def test_an_unhashable_role_is_invalid_messages_naming_the_message(role):
    messages = [{"role": "user", "content": "hi"}, {"role": role, "content": "hi"}]
    with pytest.raises(qm.InvalidMessages, match=r"messages\[1\].*role"):
        qm.count_messages(messages, "qwen-plus")
    with pytest.raises(qm.InvalidMessages):
        qm.count_messages([{"role": role, "content": "hi"}], "qwen-plus")


def test_a_part_whose_type_is_null_is_not_a_text_part():
    with pytest.raises(qm.InvalidMessages, match=r"messages\[0\]\.content\[0\].*None"):
        qm.count_messages([{"role": "user", "content": [{"type": None, "text": "x"}]}],
                          "qwen-plus")


@pytest.mark.parametrize("data", [b"", b"\x89", b"\x89P", b"\x89PN", b"BM\x00"])
def test_empty_or_few_byte_images_are_media_errors_naming_the_part(data, tmp_path):
    encoded = base64.b64encode(data).decode()
    urls = [f"data:image/png;base64,{encoded}"]
    path = tmp_path / "tiny.png"
    path.write_bytes(data)
    urls += [str(path), f"file://{path}"]
    if not data:
        urls.append("")
    for url in urls:
        with pytest.raises(qm.MediaError, match=r"messages\[0\]\.content\[1\]"):
            qm.count_messages(_image(url), IMAGE)


def test_a_key_in_another_case_is_masked_too():
    key = "sk-CaseKey0123456789abcdefXYZ"
    qm.register_secret(key)
    for text in (f"bad key {key.upper()}", f"bad key {key.lower()}", f"echo: {key}"):
        assert key.lower() not in qm.redact(text).lower(), text
    # a registered key that does not look like sk-... (only the value can catch it)
    odd = "Plain-Secret-Value-42"
    qm.register_secret(odd)
    assert "secret-value" not in qm.redact(f"x {odd.swapcase()} y").lower()


@pytest.mark.parametrize("vision", ["{patch: 1.0e-300}", "{patch: 0.5}", "{patch: 10000}",
                                    "{patch: 28, max_tokens: 0.5}",
                                    "{patch: 28, max_tokens: 1.0e300}",
                                    "{patch: 28, audio_tokens_per_second: 1.0e-300}"])
def test_an_insane_vision_rule_is_refused_at_load_naming_file_model_and_field(tmp_path,
                                                                              vision):
    override = tmp_path / "override.yaml"
    override.write_text(f"models:\n  qwen-vl-max:\n    vision: {vision}\n", encoding="utf-8")
    with pytest.raises(qm.CatalogueError) as info:
        qm.Catalogue.load(overrides=[override])
    assert info.value.file == str(override) and info.value.model == "qwen-vl-max"
    assert info.value.field.startswith("vision.")


BAD_LINES = {
    "cost": {"cost": "-5"}, "cost-text": {"cost": "abc"},
    "prompt_tokens": {"prompt_tokens": "123"}, "negative-tokens": {"prompt_tokens": -5},
    "tags": {"tags": "a"}, "model": {"model": 123}, "user": {"user": 5},
    "usage_estimated": {"usage_estimated": "yes"}, "currency": {"currency": 7},
}


@pytest.mark.parametrize("name", sorted(BAD_LINES))
def test_a_log_line_with_a_bad_field_is_skipped_and_named(name, tmp_path):
    good = {"model": "qwen-plus", "prompt_tokens": 10, "cost": "0.075", "currency": "CNY"}
    bad = {**good, **BAD_LINES[name]}
    path = tmp_path / "usage.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n", encoding="utf-8")
    field = next(iter(BAD_LINES[name]))
    with pytest.warns(qm.InvalidRecordWarning, match=f"line 2.*'{field}'"):
        records = qm.read_usage(path)
    assert [r.cost for r in records] == ["0.075"]


def test_a_deeply_nested_line_and_a_non_json_row_are_skipped_not_crashes(tmp_path):
    path = tmp_path / "usage.jsonl"
    path.write_bytes(b'{"model": "m"}\n' + b"[" * 100_000 + b"\n")
    with pytest.warns(qm.InvalidRecordWarning, match="line 2"):
        assert [r.model for r in qm.read_usage(path)] == ["m"]
    db = tmp_path / "usage.db"
    log = qm.SQLiteLog(db)
    log.append(qm.UsageRecord(model="qwen-plus", cost="0.1", currency="CNY"))
    log.close()
    with sqlite3.connect(db) as conn:
        columns = [row[1] for row in conn.execute("PRAGMA table_info(usage)")]
        row = {c: None for c in columns} | {"id": "x", "time": "2026-01-01T00:00:00+00:00",
                                             "model": "m", "record": "not json {"}
        conn.execute(f"INSERT INTO usage ({', '.join(columns)}) VALUES "
                     f"({', '.join('?' * len(columns))})", [row[c] for c in columns])
        bad = {"model": "m", "prompt_tokens": -5, "cost": "abc"}
        row |= {"id": "y", "record": json.dumps(bad)}
        conn.execute(f"INSERT INTO usage ({', '.join(columns)}) VALUES "
                     f"({', '.join('?' * len(columns))})", [row[c] for c in columns])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        records = qm.read_usage(db)
    assert [r.model for r in records] == ["qwen-plus"]
    messages = [str(w.message) for w in seen if w.category is qm.InvalidRecordWarning]
    assert len(messages) == 2 and all(str(db) in m and "row" in m for m in messages)


@pytest.mark.parametrize("source", ["jsonl", "sqlite"])
def test_the_report_skips_and_names_the_same_lines(source, tmp_path):
    from qwen_meter.report import build_report, load_usage

    good = {"model": "qwen-plus", "prompt_tokens": 10, "cost": "0.075", "currency": "CNY",
            "time": "2026-01-01T00:00:00+00:00"}
    lines = [good] + [{**good, **bad} for bad in BAD_LINES.values()]
    if source == "jsonl":
        path = tmp_path / "usage.jsonl"
        path.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    else:
        path = tmp_path / "usage.db"
        qm.SQLiteLog(path).close()
        with sqlite3.connect(path) as conn:
            columns = [row[1] for row in conn.execute("PRAGMA table_info(usage)")]
            for n, line in enumerate(lines):
                row = {c: None for c in columns} | {"id": str(n), "time": good["time"],
                                                     "model": "m", "record": json.dumps(line)}
                conn.execute(f"INSERT INTO usage ({', '.join(columns)}) VALUES "
                             f"({', '.join('?' * len(columns))})", [row[c] for c in columns])
    report = build_report(load_usage(path, tz="UTC"), by=["model"])
    assert report.records == 1  # "cost": "-5" no longer takes the total below zero
    reasons = sorted(s.reason for s in report.skipped)
    assert reasons == sorted(f"bad {next(iter(bad))}" for bad in BAD_LINES.values()), reasons
