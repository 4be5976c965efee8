"""The dashboard's cache of loaded records (qwen_meter.report.views.cache): a restart answers
exactly as a fresh load does, reads only what a log gained, and a changed source or a bad,
foreign or other version's cache file costs a reread, never a wrong number. And the app
while it loads: the page at once, the API a 503 "loading" with progress."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from decimal import Decimal
from urllib.parse import urlencode

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("pandas")

import dashboard_api_log as L

from qwen_meter.report import build_report, load_usage
from qwen_meter.report.views import open_views

RANGE = {"since": ["2026-11-01"], "until": ["2026-12-01"], "tz": ["Asia/Shanghai"]}
QUERIES = [("meta", {}), ("overview", {}), ("overview", {"user": ["张三"]}),
           ("top", {"by": ["model"]}), ("top", {"by": ["tag"]}), ("top", {"by": ["user"]}),
           ("series", {"metric": ["cost"], "by": ["model"], "bucket": ["day"]}),
           ("problems", {}), ("calls", {"limit": ["1000"]})]


def answers(views):
    """Every view's answer (calls without their line numbers: a whole log read by DuckDB's
    reader has none, its appended lines do — as in one process's live refresh)."""
    out = []
    for name, extra in QUERIES:
        value = json.loads(json.dumps(views.answer(name, {**RANGE, **extra}), default=str))
        for row in value.get("rows", []) if name == "calls" else []:
            row.pop("line", None)
        for row in value.get("recent", []):
            row.pop("line", None)
        out.append(value)
    return out


def fresh(path):
    views = open_views(path, tz="Asia/Shanghai")
    try:
        return answers(views)
    finally:
        views.records.close()


def cached(path, folder):
    """(answers, whether an earlier load was used, bytes of the log read)."""
    views = open_views(path, tz="Asia/Shanghai", cache=folder)
    try:
        return answers(views), views.records.warm_start, views.records.progress["done"]
    finally:
        views.records.close()


def report_spend(path):
    report = build_report(load_usage(path, tz="Asia/Shanghai"), by=["model"])
    return {r.currency: r.cost for r in report.totals.itertuples() if r.currency != "-"}


@pytest.mark.parametrize("corrupt", [True, False], ids=["line-by-line", "whole-file"])
def test_restart_with_cache_gives_identical_answers(tmp_path, corrupt):
    log = L.write(tmp_path / "usage.jsonl", corrupt=corrupt)
    first, warm, read = cached(log, tmp_path / "cache")
    assert (warm, read) == (False, log.stat().st_size)
    assert list((tmp_path / "cache").glob("*.duckdb"))
    second, warm, read = cached(log, tmp_path / "cache")
    assert (warm, read) == (True, 0)  # nothing read again
    assert second == first == fresh(log)
    overview = second[1]
    assert {k: Decimal(v) for k, v in overview["cost"].items()} == report_spend(log)
    assert second[0]["skipped"]["count"] == (2 if corrupt else 0)


def test_appended_log_adds_exactly_the_new_records(tmp_path):
    log = L.write(tmp_path / "usage.jsonl")
    before, _, _ = cached(log, tmp_path / "cache")
    size = log.stat().st_size
    extra = [L.qm.UsageRecord(model="qwen-max", prompt_tokens=1000, completion_tokens=10,
                              cost="0.0205", currency="CNY", time=f"2026-11-2{i}T08:00:00Z",
                              user="张三", id=f"new-{i}") for i in range(3)]
    with log.open("a", encoding="utf-8") as handle:
        handle.write("".join(r.to_json() + "\n" for r in extra) + "{broken\n")
    after, warm, read = cached(log, tmp_path / "cache")
    assert warm and read == log.stat().st_size - size  # only the appended part
    assert after == fresh(log)
    assert after[1]["calls"] == before[1]["calls"] + 3
    assert after[2]["calls"] == before[2]["calls"] + 3  # user=张三
    assert {k: Decimal(v) for k, v in after[1]["cost"].items()} == report_spend(log)
    assert after[0]["skipped"]["count"] == before[0]["skipped"]["count"] + 1
    assert {r["id"] for r in after[-1]["rows"]} >= {"new-0", "new-1", "new-2"}


def test_live_refresh_reads_only_the_appended_lines(tmp_path):
    log = L.write(tmp_path / "usage.jsonl", corrupt=False)
    for cache in (None, tmp_path / "cache"):
        views = open_views(log, tz="Asia/Shanghai", cache=cache)
        try:
            read = views.records.lines_read
            with log.open("a", encoding="utf-8") as handle:
                handle.write(L.records()[0].to_json().replace("call-0", f"x-{cache}") + "\n")
            assert views.refresh() is True
            assert views.records.lines_read == read + 1
            assert views.answer("overview", RANGE)["calls"] == \
                len(L.records()) + (1 if cache is None else 2)
        finally:
            views.records.close()


def _same_size_rewrite(log, old, new, keep_times=True):
    """Replaces text in place (same length), the modification time put back."""
    assert len(old) == len(new)
    st = log.stat()
    data = log.read_bytes()
    assert data.count(old.encode()) >= 1
    with log.open("r+b") as handle:  # same inode, same size
        handle.write(data.replace(old.encode(), new.encode(), 1))
    if keep_times:
        os.utime(log, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert log.stat().st_size == st.st_size


@pytest.mark.parametrize("keep_times", [True, False])
def test_rewritten_log_with_the_same_size_is_detected(tmp_path, keep_times):
    log = L.write(tmp_path / "usage.jsonl")
    before, _, _ = cached(log, tmp_path / "cache")
    # a cost in the middle of the log (no first or last block) changes, same length
    target = L.records()[24]
    assert target.cost and target.cost[-1] != "9"
    _same_size_rewrite(log, f'"cost":"{target.cost}"', f'"cost":"{target.cost[:-1]}9"',
                       keep_times)
    after, _, read = cached(log, tmp_path / "cache")
    assert read == log.stat().st_size  # read again, whole
    assert after == fresh(log) and after[1]["cost"] != before[1]["cost"]
    assert {k: Decimal(v) for k, v in after[1]["cost"].items()} == report_spend(log)


def test_grown_after_a_rewrite_and_rotated_logs_are_read_again(tmp_path):
    log = L.write(tmp_path / "usage.jsonl")
    cached(log, tmp_path / "cache")
    # the first record's model changes (same length) and a record is appended
    text = log.read_text(encoding="utf-8").replace('"qwen-plus"', '"qwen-xxxx"', 1)
    log.write_text(text + L.records()[0].to_json() + "\n", encoding="utf-8")
    after, _, read = cached(log, tmp_path / "cache")
    assert read == log.stat().st_size and after == fresh(log)
    # rotated: a new, shorter file under the name
    log.rename(tmp_path / "usage.jsonl.1")
    L.write(log, corrupt=False)
    log.write_text("\n".join(log.read_text().splitlines()[:10]) + "\n", encoding="utf-8")
    after, _, read = cached(log, tmp_path / "cache")
    assert read == log.stat().st_size and after == fresh(log) and after[1]["calls"] < 48


def _cache_file(folder):
    (path,) = folder.glob("*.duckdb")
    return path


def test_corrupt_or_foreign_cache_is_rebuilt(tmp_path):
    import duckdb

    log = L.write(tmp_path / "usage.jsonl")
    want, _, _ = cached(log, tmp_path / "cache")
    path = _cache_file(tmp_path / "cache")
    # the records changed behind the checksum's back: a wrong number if used
    with duckdb.connect(str(path)) as db:
        db.execute("UPDATE records SET cost = cost * 2, cost12 = cost12 * 2")
    got, warm, read = cached(log, tmp_path / "cache")
    assert (warm, read) == (False, log.stat().st_size) and got == want
    assert cached(log, tmp_path / "cache")[1:] == (True, 0)  # and it was written anew
    # not a DuckDB file at all
    path.write_bytes(b"\x00garbage" * 1000)
    got, warm, _ = cached(log, tmp_path / "cache")
    assert not warm and got == want
    # a DuckDB file of something else
    path.unlink()
    with duckdb.connect(str(path)) as db:
        db.execute("CREATE TABLE records AS SELECT 1 AS x")
    got, warm, _ = cached(log, tmp_path / "cache")
    assert not warm and got == want
    # damaged bytes inside a real cache
    data = bytearray(path.read_bytes())
    for at in range(len(data) // 2, len(data), 4096):
        data[at:at + 64] = b"\xff" * 64
    path.write_bytes(bytes(data))
    got, _, _ = cached(log, tmp_path / "cache")
    assert got == want


def test_cache_of_another_version_is_ignored(tmp_path):
    import duckdb

    log = L.write(tmp_path / "usage.jsonl")
    want, _, _ = cached(log, tmp_path / "cache")
    path = _cache_file(tmp_path / "cache")
    with duckdb.connect(str(path)) as db:
        db.execute("UPDATE cache_meta SET value = '0.0.1' WHERE name = 'qwen_meter'")
    got, warm, read = cached(log, tmp_path / "cache")
    assert (warm, read) == (False, log.stat().st_size) and got == want
    with duckdb.connect(str(path)) as db:
        db.execute("UPDATE cache_meta SET value = '999' WHERE name = 'format'")
    assert cached(log, tmp_path / "cache")[1] is False


def test_cached_sqlite_log_reads_only_new_rows(tmp_path):
    import qwen_meter as qm

    path = tmp_path / "usage.db"
    sink = qm.SQLiteLog(path)
    for r in L.records()[:20]:
        sink.append(r)
    sink.close()
    first, warm, _ = cached(path, tmp_path / "cache")
    assert not warm
    sink = qm.SQLiteLog(path)
    for r in L.records()[20:30]:
        sink.append(r)
    sink.close()
    views = open_views(path, tz="Asia/Shanghai", cache=tmp_path / "cache")
    try:
        assert views.records.warm_start
        assert views.records.lines_read == 10  # the new rows only
        assert views.answer("overview", RANGE)["calls"] == 30
        assert answers(views) == fresh(path)
        assert first[1]["calls"] == 20
    finally:
        views.records.close()


def test_no_cache_leaves_no_file(tmp_path, monkeypatch):
    import argparse

    from qwen_meter.cli.dashboard import build_app

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    log = L.write(tmp_path / "usage.jsonl")
    for no_cache, files in ((True, 0), (False, 1)):
        args = argparse.Namespace(sources=[str(log)], config=None, tz="UTC", title=None,
                                  refresh=10, no_cache=no_cache)
        app = build_app(args, background=True)
        app.views.wait(60).records.close()
        assert len(list((tmp_path / "xdg").rglob("*.duckdb"))) == files


def call(app, path, query=None):
    sent = []
    scope = {"type": "http", "method": "GET", "path": path, "headers": [],
             "query_string": (urlencode(query, doseq=True) if query else "").encode()}

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    head = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], head, sent[1]["body"]


def test_api_says_loading_until_the_records_are_in(tmp_path):
    from qwen_meter.dashboard import DashboardApp
    from qwen_meter.dashboard.loading import LoadingViews
    from qwen_meter.report.views import prepare_views

    log = L.write(tmp_path / "usage.jsonl")
    gate = threading.Event()
    load = prepare_views(log, tz="Asia/Shanghai")

    def slow(progress):
        progress.update(source=str(log), done=100, total=400)
        assert gate.wait(30)
        return load(progress)

    app = DashboardApp(LoadingViews(slow, load.label), base_path="")
    status, head, body = call(app, "/")
    assert status == 200 and b"<html" in body.lower()  # the page at once
    status, head, body = call(app, "/api/overview", RANGE)
    assert status == 503 and head["retry-after"] == "1"
    state = json.loads(body)
    assert state["error"]["code"] == "loading"
    assert state["loading"]["done"] == 100 and state["loading"]["total"] == 400
    gate.set()
    views = app.views.wait(60)
    status, _, body = call(app, "/api/overview", RANGE)
    assert status == 200 and json.loads(body)["calls"] == len(L.records())
    views.records.close()


def test_a_failed_load_is_said(tmp_path):
    from qwen_meter.base.errors import QwenMeterError
    from qwen_meter.dashboard import DashboardApp
    from qwen_meter.dashboard.loading import LoadingViews

    def broken(progress):
        raise QwenMeterError("the ledger is gone")

    views = LoadingViews(broken, "sqlite:///x.db")
    views.done.wait(10)
    status, _, body = call(DashboardApp(views, base_path=""), "/api/meta")
    error = json.loads(body)["error"]
    assert status == 500 and error["code"] == "load_failed"
    assert "the ledger is gone" in error["message"]


def test_dimension_counts_come_back_from_the_cache(tmp_path):
    """The filters' value counts are kept with the records: a restart counts only the new
    records, and gets what a fresh count gets."""
    log = L.write(tmp_path / "usage.jsonl")
    cached(log, tmp_path / "cache")
    with log.open("a", encoding="utf-8") as handle:
        handle.write(L.records()[1].to_json().replace('"call-1"', '"again-1"') + "\n")
    views = open_views(log, tz="Asia/Shanghai", cache=tmp_path / "cache")
    other = open_views(log, tz="Asia/Shanghai")
    try:
        assert views.records.saved_dims is not None
        assert views.records.saved_dims[0] == views.records.rid - 1
        assert views._counts == other._counts
        assert views.answer("meta", RANGE)["dims"] == other.answer("meta", RANGE)["dims"]
    finally:
        views.records.close()
        other.records.close()


def test_two_dashboards_over_one_cache(tmp_path):
    """The second store of a process over the same sources reads in memory (never appends to
    the first's table), and answers the same."""
    log = L.write(tmp_path / "usage.jsonl")
    cached(log, tmp_path / "cache")
    with log.open("a", encoding="utf-8") as handle:
        handle.write(L.records()[2].to_json().replace('"call-2"', '"again-2"') + "\n")
    first = open_views(log, tz="Asia/Shanghai", cache=tmp_path / "cache")
    second = open_views(log, tz="Asia/Shanghai", cache=tmp_path / "cache")
    try:
        assert first.records.cache_path is not None and second.records.cache_path is None
        first.refresh()
        assert answers(first) == answers(second) == fresh(log)
        assert first.answer("overview", RANGE)["calls"] == len(L.records()) + 1
    finally:
        first.records.close()
        second.records.close()
    assert cached(log, tmp_path / "cache")[1:] == (True, 0)


def test_cached_ledger_is_read_again_when_it_changes(tmp_path):
    from qwen_meter.ledger import open_ledger

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    try:
        ledger.append_many(L.records()[:12])
    finally:
        ledger.close()

    def opened():
        views = open_views(url, tz="Asia/Shanghai", cache=tmp_path / "cache")
        try:
            return (answers(views), views.records.warm_start, views.records.lines_read)
        finally:
            views.records.close()

    first, warm, read = opened()
    assert (warm, read, first[1]["calls"]) == (False, 12, 12)
    again, warm, read = opened()
    assert (warm, read) == (True, 0) and again == first  # unchanged: not read
    ledger = open_ledger(url)
    try:
        ledger.append_many(L.records()[12:15])
    finally:
        ledger.close()
    after, _, read = opened()
    assert read == 15 and after[1]["calls"] == 15  # changed: read again, whole
    assert {k: Decimal(v) for k, v in after[1]["cost"].items()} == \
        L.spend(L.records()[:15])
