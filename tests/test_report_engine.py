"""The streaming report engine: the same numbers from JSONL, SQLite and Parquet, per currency,
in the chosen time zone, with every bad line named and every hostile name defused."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import sqlite3
import subprocess
import sys
import warnings
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("duckdb")
pytest.importorskip("pandas")

import qwen_meter as qm
from qwen_meter.cli.main import main
from qwen_meter.report import build_report, load_usage, render
from qwen_meter.report.export import compact

MODELS = ["qwen-plus", "qwen-flash", "qwen3-max", "mystery-model"]
START = dt.datetime(2026, 11, 1, 15, 30, tzinfo=dt.timezone.utc)
TAGS = ["team=a", "team=b", "项目=翻译", "客户:阿里", "t5", "t6", "t7", "t8", "t9", "t10", "t11",
        "t12"]


def records(n: int = 300, seed: int = 1) -> list[qm.UsageRecord]:
    """Records in both regions (CNY and USD), with cache hits, thinking, tags, users."""
    import random

    rng = random.Random(seed)
    out = []
    for i in range(n):
        model = rng.choice(MODELS)
        region = rng.choice(["cn", "cn", "intl"])
        prompt = rng.choice([rng.randint(1, 3000), rng.randint(100_000, 300_000)])
        completion = rng.randint(0, 800)
        usage = qm.Usage(prompt, completion, cached_tokens=rng.choice([0, 0, prompt // 3]),
                         reasoning_tokens=rng.choice([0, min(9, completion)]))
        try:
            priced = qm.cost(usage, model, region=region)
            cost, currency = priced.amount, priced.currency
            unpriced = priced.unpriced or None
        except qm.QwenMeterError as exc:
            cost, currency, unpriced = None, None, str(exc)
        out.append(qm.UsageRecord(
            model=model, region=region, time=(START + dt.timedelta(hours=3 * i)).isoformat(),
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens, cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost=None if cost is None else f"{cost:f}", currency=currency, unpriced=unpriced,
            tags=tuple(rng.sample(TAGS, rng.randint(0, 2))),
            user=rng.choice(["alice", "王小明", None])))
    return out


RECORDS = records()


def usage_of(r: qm.UsageRecord) -> qm.Usage:
    return qm.Usage(r.prompt_tokens, r.completion_tokens, cached_tokens=r.cached_tokens,
                    reasoning_tokens=r.reasoning_tokens)


@pytest.fixture(scope="module")
def logs(tmp_path_factory) -> dict[str, Path]:
    """The same records as JSONL, SQLite and compacted Parquet."""
    folder = tmp_path_factory.mktemp("engine")
    jsonl = folder / "usage.jsonl"
    log = qm.JsonlLog(jsonl)
    for r in RECORDS:
        log.append(r)
    log.close()
    db = qm.SQLiteLog(folder / "usage.db")
    for r in RECORDS:
        db.append(r)
    db.close()
    written, skipped, _ = compact([jsonl], folder / "parquet")
    assert (written, skipped) == (len(RECORDS), 0)
    return {"jsonl": jsonl, "sqlite": folder / "usage.db", "parquet": folder / "parquet"}


@pytest.mark.parametrize("kind", ["jsonl", "sqlite", "parquet"])
def test_known_totals_per_currency(logs, kind):
    report = build_report(load_usage(logs[kind], tz="UTC"), by=["model"])
    assert report.records == len(RECORDS)
    for row in report.breakdown.itertuples():
        mine = [r for r in RECORDS if r.model == row.model and (r.currency or "-") == row.currency]
        assert row.calls == len(mine)
        assert row.prompt_tokens == sum(r.prompt_tokens for r in mine)
        assert row.cached_tokens == sum(r.cached_tokens for r in mine)
        costs = [Decimal(r.cost) for r in mine if r.cost is not None]
        assert (row.cost if costs else None) == (sum(costs, Decimal(0)) if costs else None)
        assert row.unpriced_calls == sum(1 for r in mine if r.cost is None)
    assert {c for c in report.summary.spend} == {"CNY", "USD"}
    for currency, spend in report.summary.spend.items():
        assert spend == sum(Decimal(r.cost) for r in RECORDS if r.currency == currency and r.cost)
    # one row per (group, currency), always
    assert not report.breakdown.duplicated(["model", "currency"]).any()


def test_cache_savings_are_what_cached_tokens_saved(logs):
    report = build_report(load_usage(logs["jsonl"], tz="UTC"), by=["model"])
    for row in report.breakdown.itertuples():
        mine = [r for r in RECORDS if r.model == row.model and r.currency == row.currency
                and r.cached_tokens and r.cost is not None]
        if not mine:
            continue
        expected = sum(qm.cost(qm.Usage(r.prompt_tokens, r.completion_tokens,
                                        reasoning_tokens=r.reasoning_tokens), r.model,
                               region=r.region).amount - Decimal(r.cost) for r in mine)
        assert row.cache_saved == expected


@settings(max_examples=20, deadline=None)
@given(by=st.lists(st.sampled_from(["model", "day", "week", "month", "tag", "user", "region",
                                    "status"]), min_size=1, max_size=3, unique=True),
       kind=st.sampled_from(["jsonl", "sqlite", "parquet"]),
       tz=st.sampled_from(["UTC", "Asia/Shanghai", "America/Los_Angeles"]))
def test_totals_are_the_sum_of_the_parts(logs, by, kind, tz):
    report = build_report(load_usage(logs[kind], tz=tz), by=by)
    parts = report.breakdown
    for total in report.totals.itertuples():
        mine = parts[parts["currency"] == total.currency]
        costs = [c for c in mine["cost"] if c is not None and c == c]
        if "tag" in by:  # a record with two tags is in two groups; untagged in "(none)"
            tagged = [r for r in RECORDS if (r.currency or "-") == total.currency]
            assert sum(mine["calls"]) == sum(max(1, len(set(r.tags))) for r in tagged)
            continue
        assert sum(mine["calls"]) == total.calls
        assert sum(mine["completion_tokens"]) == total.completion_tokens
        assert sum(costs, Decimal(0)) == (total.cost if total.cost is not None else 0)


def test_repricing_sits_beside_the_original_per_currency(logs):
    report = build_report(load_usage(logs["jsonl"], tz="UTC"), by=["model"],
                          reprice_as="qwen-flash")
    table = report.repricing
    assert not table.duplicated(["model", "currency", "repriced_currency"]).any()
    for row in table.itertuples():
        mine = [r for r in RECORDS if r.model == row.model and (r.currency or "-") == row.currency
                and qm.cost(usage_of(r), "qwen-flash", region=r.region).currency
                == row.repriced_currency]
        assert row.calls == len(mine)
        assert row.cost_repriced == sum(qm.cost(usage_of(r), "qwen-flash", region=r.region).amount
                                        for r in mine)  # qwen-flash prices every call
        if row.currency == row.repriced_currency and row.cost is not None:
            assert row.difference == row.cost_repriced - row.cost
        else:
            assert row.difference is None  # never CNY minus USD


def test_repricing_in_the_other_region_and_as_batch(logs):
    data = load_usage(logs["sqlite"], tz="UTC")
    intl = build_report(data, by=["model"], reprice_region="intl").repricing
    plus = intl[(intl["model"] == "qwen-plus") & (intl["currency"] == "CNY")].iloc[0]
    assert plus["repriced_currency"] == "USD"
    mine = [r for r in RECORDS if r.model == "qwen-plus" and r.region == "cn"]
    there = [qm.cost(usage_of(r), "qwen-plus", region="intl").amount for r in mine]
    assert plus["cost_repriced"] == sum(a for a in there if a is not None)
    assert plus["repriced_unpriced_calls"] == sum(a is None for a in there)
    batch = build_report(data, by=["model"], reprice_batch=True).repricing
    row = batch[(batch["model"] == "qwen-plus") & (batch["currency"] == "CNY")].iloc[0]
    assert row["cost_repriced"] == sum(qm.cost(usage_of(r), "qwen-plus", region="cn",
                                               batch=True).amount for r in mine)


def test_top_tags_per_currency_by_cost_and_by_calls(logs):
    report = build_report(load_usage(logs["jsonl"], tz="UTC"), by=["model"], top=3)
    for currency in ("CNY", "USD"):
        mine = report.top_tags[report.top_tags["currency"] == currency]
        spend: dict[str, Decimal] = {}
        for r in RECORDS:
            if r.currency == currency and r.cost is not None:
                for tag in set(r.tags):
                    spend[tag] = spend.get(tag, Decimal(0)) + Decimal(r.cost)
        best = sorted(spend.values(), reverse=True)[:3]
        assert list(mine["cost"]) == best
    assert len(report.top_tags_by_calls) == 3
    text = render(report, "table")
    assert f"more tags not listed (of {len(set(TAGS))})" in text  # no silent truncation


def test_days_are_days_of_the_chosen_zone(tmp_path):
    path = tmp_path / "tz.jsonl"
    log = qm.JsonlLog(path)
    for when in ("2026-11-01T15:59:00+00:00", "2026-11-01T16:00:00+00:00",
                 "2026-11-02T01:00:00+08:00"):
        log.append(qm.UsageRecord(model="qwen-plus", time=when, prompt_tokens=10,
                                  completion_tokens=1, cost="0.1", currency="CNY"))
    log.close()
    days = lambda tz, **kw: dict(zip(*[list(c) for c in build_report(  # noqa: E731
        load_usage(path, tz=tz, **kw), by=["day"]).breakdown[["day", "calls"]].T.values],
                                     strict=True))
    assert days("UTC") == {"2026-11-01": 3}
    assert days("Asia/Shanghai") == {"2026-11-01": 1, "2026-11-02": 2}
    assert days("Asia/Shanghai", since=dt.date(2026, 11, 2)) == {"2026-11-02": 2}
    assert days("UTC", until=dt.date(2026, 11, 1)) == {}


BAD_LINES = [
    "{}",  # must not make the file read as raw responses
    "{not json",
    "[1, 2]",
    json.dumps({"model": "qwen-plus", "prompt_tokens": -4}),
    json.dumps({"model": "qwen-plus", "prompt_tokens": 1.5}),
    json.dumps({"model": "qwen-plus", "completion_tokens": "many"}),
    json.dumps({"model": "qwen-plus", "cost": "a lot", "prompt_tokens": 1}),
    json.dumps({"model": "qwen-plus", "time": "yesterday", "prompt_tokens": 1}),
    json.dumps({"model": "qwen-plus", "prompt_tokens": 5, "cached_tokens": 9}),
]
REASONS = ["no model", "not JSON", "not a JSON object", "bad prompt_tokens", "bad prompt_tokens",
           "bad completion_tokens", "bad cost", "bad time",
           "bad cached_tokens (more than prompt_tokens)"]


def _bad_sqlite(path: Path, lines: list[str]) -> None:
    log = qm.SQLiteLog(path)
    log.close()
    with sqlite3.connect(path) as db:
        for i, line in enumerate(lines):
            db.execute("INSERT INTO usage (id, record) VALUES (?, ?)", (str(i), line))


@pytest.mark.parametrize("kind", ["jsonl", "sqlite"])
def test_the_same_checks_on_every_path(tmp_path, kind):
    good = [r.to_json() for r in RECORDS[:5]]
    lines = [BAD_LINES[0], *good[:2], *BAD_LINES[1:], *good[2:], "", "{\"model\": \"qwen-plus\"}"]
    path = tmp_path / ("mixed.jsonl" if kind == "jsonl" else "mixed.db")
    if kind == "jsonl":
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    else:
        _bad_sqlite(path, lines)
    report = build_report(load_usage(path, tz="UTC"), by=["model"])
    assert report.records == 6
    got = [(s.line, s.reason) for s in report.skipped]
    if kind == "jsonl":
        assert got == [(1, "no model"), *((i + 4, r) for i, r in enumerate(REASONS[1:]))]
    else:
        assert [r for _, r in got] == REASONS[:1] + REASONS[1:]
    assert report.skipped_count == len(BAD_LINES)
    assert "9 lines skipped" in render(report, "table")


def test_a_broken_file_is_named_not_a_traceback(tmp_path):
    path = tmp_path / "binary.jsonl"
    path.write_bytes(b'{"model": "qwen-plus", "prompt_tokens": 3}\n\xff\xfe\x00garbage\n')
    report = build_report(load_usage(path, tz="UTC"), by=["model"])
    assert report.records == 1 and [(s.line, s.reason) for s in report.skipped] == [
        (2, "not UTF-8")]


HOSTILE = ['=HYPERLINK("http://evil","x")', "<script>alert(1)</script>", "\x1b[31mred\x1b[0m",
           "a$b_$c", "+cmd|' /C calc'!A0", "[x](javascript:alert(1))", "@SUM(1)", "-2+3"]


@pytest.fixture(scope="module")
def hostile_report(tmp_path_factory):
    path = tmp_path_factory.mktemp("hostile") / "hostile.jsonl"
    log = qm.JsonlLog(path)
    for i, name in enumerate(HOSTILE):
        log.append(qm.UsageRecord(model="qwen-plus", time=START.isoformat(), prompt_tokens=10 + i,
                                  completion_tokens=1, cost="0.001", currency="CNY",
                                  tags=(name,), user=name))
    log.close()
    return build_report(load_usage(path, tz="UTC"), by=["user", "tag"])


def test_hostile_names_are_defused_in_every_format(hostile_report):
    for fmt in ("table", "md", "json", "csv"):
        text = render(hostile_report, fmt)
        assert "\x1b" not in text, fmt
    markdown = render(hostile_report, "md")
    assert "<script>" not in markdown and "[x](javascript" not in markdown
    page = render(hostile_report, "html")  # the dashboard's page, the data inlined as JSON
    assert "<script>alert(1)</script>" not in page and "\x1b" not in page
    start = page.index(">", page.index('id="qm-snapshot"')) + 1
    data = json.loads(page[start:page.index("</script>", start)])
    assert {r["name"] for r in data["top"]["user"]["rows"]} == set(HOSTILE)  # as data, whole
    rows = list(csv.reader(io.StringIO(render(hostile_report, "csv"))))
    for row in rows[1:]:
        for cell in row[:2]:  # user, tag
            assert not cell.startswith(("=", "+", "-", "@")), cell
    cost = rows[0].index("cost")
    assert all(Decimal(row[cost]) == Decimal("0.001") for row in rows[1:])  # plain numbers


def test_csv_numbers_are_plain_numbers(logs):
    rows = list(csv.DictReader(io.StringIO(render(build_report(
        load_usage(logs["jsonl"], tz="UTC"), by=["model"]), "csv"))))
    assert all("," not in row["prompt_tokens"] and int(row["prompt_tokens"]) >= 0 for row in rows)


def test_summary_comes_first_with_symbols(logs):
    text = render(build_report(load_usage(logs["jsonl"], tz="Asia/Shanghai"), by=["model"]),
                  "table")
    first = text.splitlines()[0]
    assert first.startswith("Total spend: ") and "¥" in first and "$" in first
    assert "(Asia/Shanghai)" in text and "Top models (CNY)" in text


def test_terminal_table_fits_and_aligns_chinese(logs):
    report = build_report(load_usage(logs["jsonl"], tz="UTC"), by=["user", "tag"])
    from rich.cells import cell_len

    text = render(report, "table", width=90).splitlines()
    start = text.index("By user, tag") + 1
    rows = text[start:text.index("", start)]
    assert max(cell_len(line) for line in rows) <= 90
    assert any("王小明" in line for line in rows)
    # Chinese names take two cells each: the currency column still starts at the same cell.
    header = rows[0]
    column = cell_len(header[:header.index("currency")])
    for line in [r for r in rows[2:] if not r.startswith("(not shown")]:
        at = next(i for i in range(len(line) + 1) if cell_len(line[:i]) >= column)
        assert cell_len(line[:at]) == column and line[at] in "CU-", line


def test_charts_with_chinese_tags_and_dollars_do_not_warn(hostile_report, logs):
    from qwen_meter.report.charts import MissingFontWarning, chart_pngs, cjk_font

    report = build_report(load_usage(logs["jsonl"], tz="UTC"), by=["tag"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pngs = chart_pngs(report) + chart_pngs(hostile_report)  # a$b_$c: no mathtext crash
    titles = [t for t, _ in pngs]
    assert "Daily cost by model (CNY)" in titles and "Daily cost by model (USD)" in titles
    messages = [str(w.message) for w in caught]
    missing = [w for w in caught if w.category is MissingFontWarning]
    if cjk_font():  # the glyphs themselves are checked in test_report_charts_cjk.py
        assert not [m for m in messages if "Glyph" in m] and not missing, messages
    else:  # one warning per call that draws Chinese (the hostile report has none)
        assert len(missing) == 1, messages


def test_cli_default_log_version_out_folder_and_sql(logs, tmp_path, monkeypatch, capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and qm.__version__ in capsys.readouterr().out
    monkeypatch.setenv("QWEN_METER_LOG", str(logs["jsonl"]))
    out = tmp_path / "new" / "folder" / "report.json"
    assert main(["report", "--tz", "UTC", "--format", "json", "--out", str(out)]) == 0
    assert json.loads(out.read_text())["records"] == len(RECORDS)
    monkeypatch.setenv("QWEN_METER_LOG", str(tmp_path / "missing.jsonl"))
    assert main(["report"]) == 2
    assert "missing.jsonl: no such file" in capsys.readouterr().err
    # the printed SQL, run by DuckDB itself over the Parquet folder, is the report
    import duckdb

    assert main(["report", str(logs["parquet"]), "--sql", "--by", "model"]) == 0
    script = capsys.readouterr().out
    db = duckdb.connect()
    *setup, last = [s for s in script.split(";\n") if s.strip()]
    for statement in setup:
        db.execute(statement)
    got = {(m, c): (n, cost) for m, c, n, *_, cost in
           db.execute(f"SELECT model, currency, calls, cost FROM ({last.rstrip(';')})").fetchall()}
    report = build_report(load_usage(logs["parquet"], tz="UTC"), by=["model"])
    for row in report.breakdown.itertuples():
        assert got[(row.model, row.currency)][0] == row.calls
        assert got[(row.model, row.currency)][1] == (row.cost if row.cost == row.cost else None)


def test_cli_exits_cleanly_on_a_closed_pipe(logs):
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    command = [sys.executable, "-m", "qwen_meter.cli", "report", str(logs["jsonl"]), "--by",
               "model,day,user", "--tz", "UTC"]
    producer = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=env)
    assert producer.stdout is not None
    producer.stdout.readline()
    producer.stdout.close()  # like `| head -1`
    _, err = producer.communicate(timeout=120)
    assert b"Traceback" not in err and producer.returncode in (0, 141)


def test_progress_moves_while_reading(tmp_path, monkeypatch):
    import qwen_meter.report.sources as sources

    path = tmp_path / "big.jsonl"
    path.write_text("\n".join(r.to_json() for r in RECORDS) + "\n{bad\n", encoding="utf-8")
    monkeypatch.setattr(sources, "CHUNK_BYTES", 4096)
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    report = build_report(load_usage(path, tz="UTC", progress=True), by=["model"])
    shown = [p for p in stream.getvalue().split("\r") if "reading big.jsonl" in p]
    assert len(shown) >= 5 and shown[-1].rstrip().endswith("100%")
    assert report.records == len(RECORDS)


def test_html_with_chinese_tags_in_headless_chromium(logs, tmp_path):
    import shutil

    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("QWEN_METER_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here but not installed")
        pytest.skip("chromium is not installed")
    report = build_report(load_usage(logs["jsonl"], tz="Asia/Shanghai"), by=["tag", "user"],
                          reprice_as="qwen-flash")
    page = render(report, "html")  # the dashboard's page: the browser draws the text
    assert "项目=翻译" in page and "王小明" in page
    probe = ("<script>window.addEventListener('load', () => setTimeout(() => { "
             "const d = document.body.dataset, text = document.querySelector('main').innerText;"
             "d.chinese = text.includes('王小明') || text.includes('项目=翻译');"
             "d.charts = document.querySelectorAll('canvas').length;"
             "d.overflow = document.documentElement.scrollWidth > innerWidth; }, 3000));"
             "</script>")
    path = tmp_path / "report.html"
    path.write_text(page.replace("</body>", probe + "</body>"), encoding="utf-8")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--window-size=420,900", "--dump-dom",
                          path.as_uri() + "?view=top&top_by=user"],
                         capture_output=True, text=True, timeout=120).stdout
    assert 'data-chinese="true"' in dom and 'data-charts="0"' not in dom
    assert 'data-charts="' in dom
    assert 'data-overflow="false"' in dom  # a phone-width page
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1800", path.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
