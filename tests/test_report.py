"""Reports over generated logs whose totals are known in advance."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import re
import shutil
import subprocess
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytest.importorskip("pandas")
pytest.importorskip("pyarrow")

import qwen_meter as qm
from qwen_meter.cli.main import main
from qwen_meter.report import build_report, load_usage, render, reprice

MODELS = ["qwen-plus", "qwen-flash", "qwen-max", "qwen3-max"]
START = dt.datetime(2026, 11, 1, tzinfo=dt.timezone.utc)


def make_records(n: int, seed: int = 0, regions=("cn",)) -> list[qm.UsageRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        model = rng.choice(MODELS)
        region = rng.choice(regions)
        completion = rng.randint(0, 900)
        usage = qm.Usage(rng.randint(1, 200_000), completion,
                         cached_tokens=rng.choice([0, 0, 64]),
                         reasoning_tokens=rng.choice([0, min(7, completion)]))
        if model == "qwen-max":
            usage = qm.Usage(usage.prompt_tokens % 30_000 + 1, completion)
        priced = qm.cost(usage, model, region=region)
        out.append(qm.UsageRecord(
            model=model, region=region, time=(START + dt.timedelta(hours=5 * i)).isoformat(),
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            total_tokens=usage.total_tokens, cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens, estimated_prompt_tokens=usage.prompt_tokens,
            cost=None if priced.amount is None else f"{priced.amount:f}",
            currency=priced.currency, unpriced=priced.unpriced or None,
            tags=(f"team={rng.choice('ab')}",), user=rng.choice(["alice", "bob", None])))
    return out


def write_log(path, records, extra_lines=()):
    log = qm.JsonlLog(path)
    for record in records:
        log.append(record)
    log.close()
    with open(path, "a", encoding="utf-8") as handle:
        for line in extra_lines:
            handle.write(line + "\n")
    return path


@pytest.fixture(scope="module")
def log_path(tmp_path_factory):
    return write_log(tmp_path_factory.mktemp("report") / "usage.jsonl", make_records(400))


def test_totals_are_known_in_advance(log_path):
    records = make_records(400)
    report = build_report(load_usage(log_path), by=["model"])
    for row in report.breakdown.itertuples():
        mine = [r for r in records if r.model == row.model]
        assert row.calls == len(mine)
        assert row.prompt_tokens == sum(r.prompt_tokens for r in mine)
        assert row.cost == sum((Decimal(r.cost) for r in mine if r.cost), Decimal(0))
        assert row.unpriced_calls == sum(1 for r in mine if r.cost is None)
    (total,) = report.totals.itertuples()
    assert total.cost == sum(Decimal(r.cost) for r in records if r.cost)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["model", "day", "week", "month", "tag", "user", "region"]),
                min_size=1, max_size=3, unique=True))
def test_totals_equal_the_sum_of_the_parts(log_path, by):
    report = build_report(load_usage(log_path), by=by)
    parts = report.breakdown
    for total in report.totals.itertuples():
        mine = parts[parts["currency"] == total.currency]
        assert sum(mine["calls"]) == total.calls  # every generated record has one tag
        assert sum(c for c in mine["cost"] if c is not None) == total.cost
        assert sum(mine["completion_tokens"]) == total.completion_tokens


def test_repricing_onto_the_same_model_gives_the_same_cost(log_path):
    data = load_usage(log_path)
    same = reprice(data.table)
    assert same["cost"].to_pylist() == data.table["cost"].to_pylist()
    report = build_report(data, by=["model"], reprice_as="qwen-flash")
    flash = report.repricing[report.repricing["model"] == "qwen-flash"].iloc[0]
    assert flash["cost"] == flash["cost_repriced"] and flash["difference"] == 0


def test_repricing_other_region_and_batch(log_path):
    data = load_usage(log_path)
    intl = build_report(data, by=["model"], reprice_region="intl").repricing
    assert set(intl["repriced_currency"].dropna()) <= {"USD", "CNY"}
    batch = build_report(data, by=["model"], reprice_batch=True).repricing
    plus = batch[batch["model"] == "qwen-plus"].iloc[0]
    records = [r for r in make_records(400) if r.model == "qwen-plus"]
    expected = sum(qm.cost(qm.Usage(r.prompt_tokens, r.completion_tokens,
                                    cached_tokens=r.cached_tokens,
                                    reasoning_tokens=r.reasoning_tokens),
                           "qwen-plus", batch=True).amount for r in records)
    assert plus["cost_repriced"] == expected


def test_currencies_are_never_mixed(tmp_path):
    path = write_log(tmp_path / "mixed.jsonl", make_records(120, seed=3, regions=("cn", "intl")))
    report = build_report(load_usage(path), by=["model"])
    assert set(report.totals["currency"]) >= {"CNY", "USD"}
    assert all(len(group) == 1 for _, group in report.breakdown.groupby(["model", "currency"]))


def test_bad_lines_are_skipped_and_listed(tmp_path):
    path = write_log(tmp_path / "bad.jsonl", make_records(5), extra_lines=[
        "{not json", json.dumps({"version": 1, "prompt_tokens": 3}),
        json.dumps({"version": 1, "model": "qwen-plus", "prompt_tokens": -4}),
        json.dumps({"version": 1, "model": "mystery-model", "prompt_tokens": 10,
                    "completion_tokens": 1, "status": "ok"})])
    data = load_usage(path)
    assert len(data) == 6
    assert [(s.line, s.reason) for s in data.skipped] == [
        (6, "not JSON"), (7, "no model"), (8, "bad prompt_tokens")]
    report = build_report(data, by=["model"])
    text = render(report, "table")
    assert "3 lines skipped" in text and "bad.jsonl:6 not JSON" in text
    assert "could not be priced" in text


def test_raw_responses_are_priced(tmp_path):
    path = tmp_path / "responses.jsonl"
    lines = [
        {"id": "chatcmpl-1", "object": "chat.completion", "created": 1763800000,
         "model": "qwen-plus", "choices": [],
         "usage": {"prompt_tokens": 22, "completion_tokens": 16, "total_tokens": 38}},
        {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1763800100,
         "model": "qwen-plus", "choices": [],
         "usage": {"prompt_tokens": 3019, "completion_tokens": 104, "total_tokens": 3123,
                   "prompt_tokens_details": {"cached_tokens": 2048}}},
        {"id": "chatcmpl-3", "object": "chat.completion.chunk", "model": "qwen-plus",
         "choices": [{"delta": {"content": "x"}}], "usage": None},
        {"output": {"text": "..."}, "request_id": "r1",
         "usage": {"input_tokens": 12, "output_tokens": 98, "total_tokens": 110}},
        {"object": "chat.completion", "model": "gpt-4o", "created": 1763800200,
         "usage": {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}},
    ]
    path.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    data = load_usage(path, default_model="qwen-max")
    assert len(data) == 4 and [s.line for s in data.skipped] == [3]
    costs = data.table["cost"].to_pylist()
    assert costs[0] == qm.cost(lines[0]["usage"], "qwen-plus").amount
    assert costs[1] == qm.cost(lines[1]["usage"], "qwen-plus").amount
    assert costs[2] == qm.cost(lines[3]["usage"], "qwen-max").amount
    assert costs[3] is None and data.unpriced  # an unknown model is listed, not free


def test_sqlite_log_and_date_range(tmp_path):
    log = qm.SQLiteLog(tmp_path / "usage.db")
    for record in make_records(50):
        log.append(record)
    log.close()
    everything = load_usage(tmp_path / "usage.db")
    some = load_usage(tmp_path / "usage.db", since=dt.date(2026, 11, 3),
                      until=dt.date(2026, 11, 5))
    assert len(everything) == 50
    assert len(some) == sum(1 for r in make_records(50)
                            if "2026-11-03" <= r.time[:10] < "2026-11-05")


def test_burn_down(log_path):
    report = build_report(load_usage(log_path), by=["day"], budget=(Decimal("1"), "CNY"))
    burn = report.burn_down
    assert burn["cumulative"].iloc[-1] == report.totals[report.totals["currency"] == "CNY"][
        "cost"].iloc[0]
    assert burn["remaining"].iloc[-1] == Decimal(1) - burn["cumulative"].iloc[-1]


@pytest.mark.parametrize("fmt", ["table", "csv", "md", "json"])
def test_formats(log_path, fmt):
    text = render(build_report(load_usage(log_path), by=["model", "month"]), fmt)
    assert "qwen-plus" in text
    if fmt == "json":
        data = json.loads(text)
        assert data["records"] == 400 and "Totals (per currency)" in data["sections"]
    if fmt == "csv":
        assert text.splitlines()[0].startswith("model,month,currency,calls")


def test_cli_report(log_path, tmp_path, capsys):
    out = tmp_path / "report.md"
    png = tmp_path / "charts.png"
    assert main(["report", str(log_path), "--by", "model,day", "--format", "md", "--out",
                 str(out), "--plot", str(png), "--reprice-as", "qwen-flash", "--budget",
                 "5 CNY", "--since", "2026-11-02"]) == 0
    assert out.read_text().startswith("# Qwen usage report")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(log_path), "--by", "colour"]) == 2
    assert "cannot group by colour" in capsys.readouterr().err


def test_html_report_opens_in_headless_chromium(log_path, tmp_path):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        if os.environ.get("QWEN_METER_REQUIRE_CHROMIUM"):
            pytest.fail("chromium is required here but not installed")
        pytest.skip("chromium is not installed")
    pytest.importorskip("matplotlib")
    html = render(build_report(load_usage(log_path), by=["model", "day"]), "html")
    # the report is the dashboard's page with its data inlined: its charts are drawn by the
    # page's script (ECharts, inlined too) into canvases
    probe = ("<script>window.addEventListener('load', () => setTimeout(() => { "
             "document.body.dataset.charts = document.querySelectorAll('canvas').length; }, "
             "3000));</script>")
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", probe + "</body>"), encoding="utf-8")
    flags = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    charts = re.search(r'data-charts="(\d+)"', dom)
    assert charts is not None and int(charts.group(1)) >= 1, dom[-2000:]
    shot = tmp_path / "report.png"
    subprocess.run([*flags, f"--screenshot={shot}", "--window-size=1200,1600",
                    "--virtual-time-budget=10000", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(shot) as image:
        colours = image.convert("RGB").getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 20  # charts drawn, not a blank page
