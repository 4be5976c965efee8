"""The dashboard's JSON API over a log with Chinese tags and users: its numbers equal
`qwen-meter report`'s and sums worked out by hand, filters / ranges / zones change them as they
should, drill-down returns the calls behind a bucket, and bad input gets a clear answer."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
import json
import re
import sqlite3
from decimal import Decimal
from urllib.parse import urlencode

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("pandas")

import dashboard_api_log as L

from qwen_meter.dashboard import dashboard_app
from qwen_meter.report import build_report, load_usage
from qwen_meter.report.sources import Source
from qwen_meter.report.views import BudgetSpec, RecordStore, Views, open_views

RANGE = {"since": ["2026-11-01"], "until": ["2026-12-01"], "tz": ["Asia/Shanghai"]}


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    return L.write(tmp_path_factory.mktemp("dash") / "usage.jsonl")


@pytest.fixture(scope="module")
def views(log):
    v = open_views(log, tz="Asia/Shanghai")
    yield v
    v.records.close()


def money(values):
    return {k: Decimal(v) for k, v in values.items()}


def call(app, path, query=None, headers=()):
    """One request through the ASGI app: (status, headers, body)."""
    sent = []
    scope = {"type": "http", "method": "GET", "path": path, "headers": list(headers),
             "query_string": (urlencode(query, doseq=True) if query else "").encode()}

    async def receive():
        return {"type": "http.request", "body": b""}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    head = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], head, sent[1]["body"]


def test_totals_equal_the_report_per_currency(log, views):
    report = build_report(load_usage(log, tz="Asia/Shanghai"), by=["model"])
    overview = views.answer("overview", RANGE)
    totals = {row.currency: row.cost for row in report.totals.itertuples() if row.currency != "-"}
    assert money(overview["cost"]) == totals
    assert overview["calls"] == report.records == len(L.records())
    assert money(overview["cost"]) == L.spend(L.records())  # and the hand-made sum
    top = {r["name"]: r for r in views.answer("top", {**RANGE, "by": ["model"]})["rows"]}
    for row in report.breakdown.itertuples():
        if row.currency != "-":
            assert Decimal(top[row.model]["cost"][row.currency]) == row.cost
    assert {m: r["calls"] for m, r in top.items()} == {
        m: len(L.pick(L.records(), model=m)) for m in ("qwen-plus", "qwen-flash")}
    tokens = overview["tokens"]
    assert tokens["input"] == sum(r.prompt_tokens for r in L.records())
    assert tokens["output"] == sum(r.completion_tokens for r in L.records())


@pytest.mark.parametrize("match", [
    {"user": "张三"}, {"tag": "feature=智能客服"}, {"model": "qwen-flash", "user": "李四"},
    {"user": ["张三", "王五"]}, {"key": "team-1", "tag": "feature=翻译"},
    {"region": "intl"}, {"status": "error"}])
def test_filters_match_hand_sums(views, match):
    params = {**RANGE, **{k: v if isinstance(v, list) else [v] for k, v in match.items()}}
    overview = views.answer("overview", params)
    mine = L.pick(L.records(), **match)
    assert mine and overview["calls"] == len(mine)
    assert money(overview["cost"]) == L.spend(mine)
    assert overview["notices"] == []
    calls = views.answer("calls", {**params, "limit": ["1000"]})
    assert sorted(r["id"] for r in calls["rows"]) == sorted(r.id for r in mine)


def test_range_is_whole_days_in_the_zone(views):
    rows = L.records()
    for tz in ("Asia/Shanghai", "UTC", "America/New_York"):
        zone = L.ZoneInfo(tz)
        params = {"since": ["2026-11-12"], "until": ["2026-11-14"], "tz": [tz]}
        mine = L.pick(rows, since=L.local_day("2026-11-12", zone),
                      until=L.local_day("2026-11-14", zone))
        answer = views.answer("overview", params)
        assert answer["calls"] == len(mine) and money(answer["cost"]) == L.spend(mine), tz
    shanghai = L.pick(rows, since=L.local_day("2026-11-12"), until=L.local_day("2026-11-14"))
    utc = L.pick(rows, since=L.local_day("2026-11-12", dt.timezone.utc),
                 until=L.local_day("2026-11-14", dt.timezone.utc))
    assert {r.id for r in shanghai} != {r.id for r in utc}  # the zone really changed the days
    # a time of day that is not a whole hour: answered from the records, not the hourly cube
    params = {"since": ["2026-11-12T08:10:00+08:00"], "until": ["2026-11-13T03:20"],
              "tz": ["Asia/Shanghai"]}
    mine = L.pick(rows, since=dt.datetime(2026, 11, 12, 0, 10, tzinfo=dt.timezone.utc),
                  until=dt.datetime(2026, 11, 13, 3, 20, tzinfo=L.SHANGHAI))
    assert views.answer("overview", params)["calls"] == len(mine)


def test_series_buckets_are_local_days(views):
    answer = views.answer("series", {**RANGE, "metric": ["cost"], "by": ["model"],
                                     "bucket": ["day"]})
    assert len(answer["buckets"]) == 30 and answer["buckets"][0] == "2026-11-01T00:00:00+08:00"
    for series in answer["series"]:
        for start, value in zip(answer["buckets"], series["values"], strict=True):
            low = dt.datetime.fromisoformat(start)
            mine = L.pick(L.records(), since=low, until=low + dt.timedelta(days=1),
                          model=series["name"])
            assert Decimal(value) == L.spend(mine).get(series["currency"], 0)
    calls = views.answer("series", {**RANGE, "metric": ["calls"], "by": ["tag"],
                                    "bucket": ["hour"]})
    names = {s["name"] for s in calls["series"]}
    assert "feature=智能客服" in names and "(none)" in names
    total = sum(sum(s["values"]) for s in calls["series"])
    assert total == sum(max(len(set(r.tags)), 1) for r in L.records())


def test_drill_down_returns_the_calls_of_a_bucket(views):
    day = L.local_day("2026-11-12")
    params = {**RANGE, "bucket_start": [day.isoformat()],
              "bucket_end": [(day + dt.timedelta(days=1)).isoformat()],
              "model": ["qwen-plus"], "limit": ["1000"]}
    answer = views.answer("calls", params)
    mine = L.pick(L.records(), since=day, until=day + dt.timedelta(days=1), model="qwen-plus")
    assert answer["total"] == len(mine) > 0
    assert [r["id"] for r in answer["rows"]] == [r.id for r in reversed(mine)]  # newest first
    row = answer["rows"][0]
    source = next(r for r in L.records() if r.id == row["id"])
    assert row["user"] == source.user and row["tags"] == list(source.tags)
    assert row["time"].endswith("+08:00") and row["latency_ms"] == source.latency_ms
    by_cost = views.answer("calls", {**params, "order": ["cost"], "limit": ["2"],
                                     "offset": ["1"]})
    costs = sorted((Decimal(r.cost) for r in mine if r.cost), reverse=True)
    assert [Decimal(r["cost"]) for r in by_cost["rows"]] == costs[1:3]
    lost = views.answer("calls", {**RANGE, "problem": ["lost"]})
    assert [r["id"] for r in lost["rows"]] == ["call-21"]
    assert lost["rows"][0]["usage_estimated"] is True


def test_problems_are_counted(views):
    rows = {r["kind"]: r for r in views.answer("problems", RANGE)["rows"]}
    for kind, match in (("error", {"status": "error"}), ("refused", {"status": "refused"}),
                        ("cancelled", {"status": "cancelled"}), ("lost", {"status": "lost"}),
                        ("estimated", {"usage_estimated": True})):
        assert rows[kind]["calls"] == len(L.pick(L.records(), **match)) > 0, kind
    assert money(rows["lost"]["cost"]) == L.spend(L.pick(L.records(), status="lost"))
    overview = views.answer("overview", RANGE)
    assert overview["problems"] == {k: v["calls"] for k, v in rows.items()}


def test_unknown_value_is_a_notice_and_empty(views):
    answer = views.answer("overview", {**RANGE, "model": ["qwen-nope"]})
    assert answer["calls"] == 0 and answer["cost"] == {}
    assert answer["notices"] == ["no calls match model=qwen-nope"]
    top = views.answer("top", {**RANGE, "tag": ["feature=无"], "by": ["user"]})
    assert top["rows"] == [] and top["notices"] == ["no calls match tag=feature=无"]


def test_meta_names_dimensions_and_skipped_lines(views, log):
    meta = views.answer("meta", RANGE)
    assert meta["skipped"]["count"] == 2
    reasons = {(e["line"], e["reason"]) for e in meta["skipped"]["examples"]}
    assert (4, "bad prompt_tokens") in reasons and (8, "not JSON") in reasons
    assert set(meta["dims"]["user"]) == {"张三", "李四", "王五", "-"}
    assert set(meta["dims"]["key"]) == {"team-0", "team-1", "-"}  # call-30 has no tags
    assert L.HOSTILE in meta["dims"]["tag"] and meta["currencies"] == ["CNY", "USD"]
    assert meta["live"] is True and meta["refresh_seconds"] == 10
    assert meta["tz"] == "Asia/Shanghai" and meta["first"] == "2026-11-10T08:30:00+08:00"


def test_http_answers(views):
    app = dashboard_app(views, base_path="")
    status, head, body = call(app, "/api/top", {**RANGE, "by": "tag"})
    assert status == 200 and head["content-type"] == "application/json; charset=utf-8"
    names = [r["name"] for r in json.loads(body)["rows"]]
    assert L.HOSTILE in names and L.BREAKOUT in names  # plain data: the page escapes it
    assert L.HOSTILE.encode() in body  # JSON, not HTML-escaped text
    for query, param in (({"since": "yesterday"}, "since"), ({"tz": "Mars/Olympus"}, "tz"),
                         ({"by": "colour"}, "by"), ({"limit": "-1"}, "limit"),
                         ({"since": "2026-11-05", "until": "2026-11-01"}, "until"),
                         ({"bucket_start": "x"}, "bucket_start"),
                         ({"since": "1990-01-01", "bucket": "hour"}, "bucket")):
        path = {"limit": "/api/calls", "bucket_start": "/api/calls",
                "bucket": "/api/series"}.get(param, "/api/top")
        status, head, body = call(app, path, query)
        error = json.loads(body)["error"]
        assert status == 400 and error["code"] == "bad_param" and error["param"] == param
        assert head["content-type"].startswith("application/json")
    status, _, body = call(app, "/api/nothing")
    assert status == 404 and json.loads(body)["error"]["code"] == "not_found"
    status, _, body = call(app, "/assets/../../etc/passwd")
    assert status == 404


def test_csv_export(views):
    app = dashboard_app(views, base_path="")
    status, head, body = call(app, "/api/export.csv", {**RANGE, "table": "top", "by": "user"})
    assert status == 200 and head["content-type"] == "text/csv; charset=utf-8"
    assert not body.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    zhang = next(r for r in rows if r["user"] == "张三")
    mine = L.pick(L.records(), user="张三")
    assert int(zhang["calls"]) == len(mine)
    assert Decimal(zhang["cost_CNY"]) == L.spend(mine)["CNY"]
    _, _, body = call(app, "/api/export.csv", {**RANGE, "table": "calls", "user": "李四"})
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    assert sorted(r["id"] for r in rows) == sorted(r.id for r in L.pick(L.records(),
                                                                         user="李四"))
    _, _, body = call(app, "/api/export.csv", {**RANGE, "table": "series", "metric": "calls"})
    rows = list(csv.DictReader(io.StringIO(body.decode("utf-8"))))
    assert sum(int(r["calls"]) for r in rows) == len(L.records())


def test_live_refresh_reads_appended_records(tmp_path):
    path = L.write(tmp_path / "live.jsonl", corrupt=False)
    views = open_views(path, tz="Asia/Shanghai")
    try:
        before = views.answer("overview", RANGE)
        extra = L.records()[:3]
        with path.open("a", encoding="utf-8") as handle:
            for r in extra:
                handle.write(r.to_json() + "\n")
            handle.write('{"model": "qwen-plus", "prompt_tokens": 5')  # a line being written
        assert views.refresh() is True
        after = views.answer("overview", RANGE)
        assert after["calls"] == before["calls"] + 3
        assert money(after["cost"]) == L.spend(L.records() + extra)
        with path.open("a", encoding="utf-8") as handle:  # the line is finished
            handle.write(', "completion_tokens": 1, "time": "2026-11-11T00:00:00Z", '
                         '"cost": "0.5", "currency": "CNY"}\n')
        views.refresh()
        assert views.answer("overview", RANGE)["calls"] == before["calls"] + 4
        assert views.refresh() is False  # nothing new: nothing read
    finally:
        views.records.close()


def test_live_refresh_of_a_sqlite_log(tmp_path):
    import qwen_meter as qm

    path = tmp_path / "usage.db"
    log = qm.SQLiteLog(path)
    for r in L.records()[:10]:
        log.append(r)
    log.close()
    views = open_views(path, tz="Asia/Shanghai")
    try:
        assert views.answer("overview", RANGE)["calls"] == 10
        log = qm.SQLiteLog(path)
        for r in L.records()[10:15]:
            log.append(r)
        log.close()
        views.refresh()
        answer = views.answer("overview", RANGE)
        assert answer["calls"] == 15 and money(answer["cost"]) == L.spend(L.records()[:15])
    finally:
        views.records.close()
    with sqlite3.connect(path) as db:
        assert db.execute("SELECT count(*) FROM usage").fetchone()[0] == 15


def test_budgets_burn_down_and_forecast(log):
    now = dt.datetime(2026, 11, 12, 12, 0, tzinfo=dt.timezone.utc)
    store = RecordStore([Source(log, "log")])
    specs = [BudgetSpec("monthly", Decimal("5"), "CNY", "month"),
             BudgetSpec("daily", Decimal("0.5"), "CNY", "day", scope="key", subject="team-1")]
    views = Views(store, tz="Asia/Shanghai", budgets=specs, clock=lambda: now)
    try:
        month, day = views.answer("overview", RANGE)["budgets"]
    finally:
        store.close()
    start = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)
    spent = L.spend(L.pick(L.records(), since=start, until=now))["CNY"]
    assert Decimal(month["spent"]) == spent
    assert Decimal(month["remaining"]) == Decimal(5) - spent
    elapsed, total = (now - start).total_seconds(), 30 * 86400
    assert abs(Decimal(month["forecast"]) - spent * Decimal(total) / Decimal(elapsed)) < \
        Decimal("0.00001")
    assert Decimal(month["burn"][-1][1]) == spent
    assert [Decimal(b) for _, b in month["burn"]] == sorted(Decimal(b) for _, b in month["burn"])
    assert month["period_start"] == "2026-11-01T08:00:00+08:00"
    today = dt.datetime(2026, 11, 12, tzinfo=dt.timezone.utc)
    mine = L.pick(L.records(), since=today, until=now, key="team-1")
    assert Decimal(day["spent"]) == L.spend(mine).get("CNY", 0)
    assert day["scope"] == "key" and day["subject"] == "team-1"


def test_folder_of_logs(tmp_path):
    rows = L.records()
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "a.jsonl").write_text("".join(r.to_json() + "\n" for r in rows[:20]),
                                    encoding="utf-8")
    (folder / "b.jsonl").write_text("".join(r.to_json() + "\n" for r in rows[20:]),
                                    encoding="utf-8")
    views = open_views(folder, tz="Asia/Shanghai")
    try:
        answer = views.answer("overview", RANGE)
        assert answer["calls"] == len(rows) and money(answer["cost"]) == L.spend(rows)
    finally:
        views.records.close()


def test_default_range_is_the_last_30_days(log):
    store = RecordStore([Source(log, "log")])
    try:
        now = dt.datetime(2026, 11, 14, 3, 0, tzinfo=dt.timezone.utc)
        views = Views(store, tz="Asia/Shanghai", clock=lambda: now)
        meta = views.answer("meta", {})
        assert meta["since"] == "2026-10-16T00:00:00+08:00"  # 30 whole local days to today
        assert meta["until"] == "2026-11-15T00:00:00+08:00" and meta["notices"] == []
        mine = L.pick(L.records(), until=L.local_day("2026-11-15"))
        assert views.answer("overview", {})["calls"] == len(mine) < len(L.records())
        later = dt.datetime(2027, 3, 1, tzinfo=dt.timezone.utc)  # nothing in the last 30 days
        views = Views(store, tz="Asia/Shanghai", clock=lambda: later)
        answer = views.answer("overview", {})
        meta = views.answer("meta", {})
    finally:
        store.close()
    assert answer["calls"] == len(L.records())  # the 30 days up to the last call
    assert meta["until"] == "2026-11-16T00:00:00+08:00"
    assert meta["since"] == "2026-10-17T00:00:00+08:00"
    assert re.search("no calls in the last 30 days", answer["notices"][0])


def test_costs_finer_than_a_picocent_stay_exact(tmp_path):
    """Money is summed from 64-bit decimals only while every cost fits them exactly."""
    rows = L.records()[:6]
    path = tmp_path / "fine.jsonl"
    lines = [r.to_json() for r in rows]
    fine = json.loads(lines[0])
    fine.update(id="fine", cost="0.0000000000000123")  # 16 decimals: more than 12
    lines.append(json.dumps(fine))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    views = open_views(path, tz="Asia/Shanghai")
    try:
        answer = views.answer("overview", RANGE)
    finally:
        views.records.close()
    report = build_report(load_usage(path, tz="Asia/Shanghai"), by=["model"])
    totals = {r.currency: r.cost for r in report.totals.itertuples() if r.currency != "-"}
    assert money(answer["cost"]) == totals
    assert totals["CNY"] == L.spend(rows)["CNY"] + Decimal("0.0000000000000123")


def test_live_state_comes_from_the_store(log, tmp_path):
    """With a shared store, the overview shows what the gateway's budgets hold in it."""
    import qwen_meter as qm

    url = f"sqlite:///{tmp_path / 'limits.db'}"
    spec = BudgetSpec("daily", Decimal("5"), "CNY", "day", scope="key", subject="team-1")
    budget = qm.Budget("5 CNY", per="day", scope="key", name="daily", store=url)
    held = budget.reserve(Decimal("0.75"), key="key=team-1")
    budget.commit(held, Decimal("0.5"))
    budget.reserve(Decimal("0.25"), key="key=team-1")  # in flight
    budget.reserve(Decimal("1"), key="key=team-0")  # another key's ledger
    store = RecordStore([Source(log, "log")])
    try:
        views = Views(store, tz="UTC", budgets=[spec], store=url)
        state = views.answer("overview", RANGE)["live_state"]
    finally:
        store.close()
    (live,) = state["budgets"]
    assert Decimal(live["committed"]) == Decimal("0.5")
    assert Decimal(live["reserved"]) == Decimal("0.25")
    assert Decimal(live["remaining"]) == Decimal("4.25") and live["degraded"] is False


def test_budgets_from_a_gateway_config():
    from qwen_meter.gateway.config import parse_config
    from qwen_meter.gateway.ui import budget_specs

    config = parse_config({
        "upstreams": {"default": {"url": "https://dashscope.aliyuncs.com",
                                  "api_key_env": "DASHSCOPE_API_KEY"}},
        "budgets": [{"name": "all", "limit": "500 CNY", "per": "month"}],
        "keys": [{"name": "search", "hash": "sha256:" + "0" * 64,
                  "budgets": [{"name": "daily", "limit": "$5", "per": "day"}]},
                 {"name": "old", "hash": "sha256:" + "1" * 64, "revoked": True,
                  "budgets": [{"name": "daily", "limit": "1 CNY", "per": "day"}]}]})
    specs = budget_specs(config)
    assert [(s.scope, s.subject, s.name, s.limit, s.currency, s.period) for s in specs] == [
        ("global", "", "all", Decimal(500), "CNY", "month"),
        ("key", "search", "daily", Decimal(5), "USD", "day")]


def test_parquet_of_log_compact(log, tmp_path):
    from qwen_meter.cli.main import main

    out = tmp_path / "compact"
    assert main(["log", "compact", str(log), "--out", str(out)]) == 0
    views = open_views(out, tz="Asia/Shanghai")
    try:
        answer = views.answer("overview", RANGE)
        meta = views.answer("meta", RANGE)
    finally:
        views.records.close()
    assert money(answer["cost"]) == L.spend(L.records())
    assert answer["calls"] == len(L.records()) and meta["live"] is False


def test_a_rotated_log_is_read_again(tmp_path):
    path = L.write(tmp_path / "rotating.jsonl", corrupt=False)
    views = open_views(path, tz="Asia/Shanghai")
    try:
        assert views.answer("overview", RANGE)["calls"] == len(L.records())
        kept = L.records()[40:]  # rotated: a new, shorter file under the same name
        path.write_text("".join(r.to_json() + "\n" for r in kept), encoding="utf-8")
        assert views.refresh() is True
        answer = views.answer("overview", RANGE)
        assert answer["calls"] == len(kept) and money(answer["cost"]) == L.spend(kept)
        meta = views.answer("meta", RANGE)
        assert set(meta["dims"]["user"]) == {r.user or "-" for r in kept}
    finally:
        views.records.close()


def test_a_last_line_without_newline(tmp_path):
    """A finished log whose last line has no newline counts it, as the report does; a line
    still being written (not whole JSON yet) waits."""
    rows = L.records()[:5]
    path = tmp_path / "no-newline.jsonl"
    path.write_text("\n".join(r.to_json() for r in rows), encoding="utf-8")
    views = open_views(path, tz="Asia/Shanghai")
    try:
        assert views.answer("overview", RANGE)["calls"] == len(load_usage(path)) == 5
        with path.open("a", encoding="utf-8") as handle:
            handle.write("\n" + L.records()[5].to_json()[:30])
        views.refresh()
        assert views.answer("overview", RANGE)["calls"] == 5
        with path.open("a", encoding="utf-8") as handle:
            handle.write(L.records()[5].to_json()[30:] + "\n")
        views.refresh()
        assert views.answer("overview", RANGE)["calls"] == 6
    finally:
        views.records.close()
