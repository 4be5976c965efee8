"""What the qwen-meter command tells a user is right: the file it was given, stdin, every
region, the chart format, money as people type it, the usage line of the command they mistyped,
unlisted models, and counts that read as English."""

from __future__ import annotations

import io
import json
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from test_report import make_records, write_log

import qwen_meter as qm
from qwen_meter.catalogue.core import default_catalogue
from qwen_meter.cli.common import REGIONS
from qwen_meter.cli.main import main


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return write_log(tmp_path / "usage.jsonl", make_records(40))


def _stdin(monkeypatch: pytest.MonkeyPatch, data: bytes) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data), encoding="utf-8"))


# --- report: what it is given -------------------------------------------------------------

@pytest.mark.parametrize("body", [
    json.dumps({"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}]}),
    json.dumps({"model": "qwen-plus", "messages": []}, indent=2),
    "model: qwen-plus\nbudget: 5\n"])
def test_report_refuses_a_file_that_is_not_a_usage_log(tmp_path, capsys, body):
    path = tmp_path / "request.json"
    path.write_text(body, encoding="utf-8")
    assert main(["report", str(path)]) == 2
    captured = capsys.readouterr()
    assert "records" not in captured.out  # no report of nothing
    assert f"{path}: not a usage log" in captured.err
    with pytest.raises(qm.QwenMeterError, match="not a usage log"):
        from qwen_meter.report import load_usage

        load_usage(path)


def test_report_of_a_request_says_it_is_a_request(tmp_path, capsys):
    path = tmp_path / "request.json"
    path.write_text(json.dumps({"model": "qwen-plus", "messages": []}), encoding="utf-8")
    assert main(["report", str(path)]) == 2
    assert "line 1 is a request" in capsys.readouterr().err


def test_an_empty_log_is_still_a_log(tmp_path, capsys):
    path = tmp_path / "fresh.jsonl"
    path.write_text("", encoding="utf-8")
    assert main(["report", str(path)]) == 0
    assert "0 records" in capsys.readouterr().out


def test_report_reads_stdin(log_path, monkeypatch, capsys):
    assert main(["report", str(log_path), "--format", "json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    _stdin(monkeypatch, log_path.read_bytes())
    assert main(["report", "-", "--format", "json"]) == 0
    from_stdin = json.loads(capsys.readouterr().out)
    assert from_stdin["records"] == from_file["records"] == 40
    assert from_stdin["sections"] == from_file["sections"]


def test_report_of_stdin_names_stdin_in_skipped_lines(monkeypatch, capsys, log_path):
    _stdin(monkeypatch, log_path.read_bytes() + b"{not json\n")
    assert main(["report", "-"]) == 0
    assert "stdin:41 not JSON" in capsys.readouterr().out


def test_cli_regions_are_the_catalogues():
    assert set(REGIONS) == set(default_catalogue().regions)


@pytest.mark.parametrize("region", sorted(set(REGIONS) - {"cn", "intl"}))
def test_report_reprices_and_prices_in_every_region(log_path, tmp_path, capsys, region):
    offered = "qwen-plus" in {s.name for s in default_catalogue() if region in s.offers}
    assert main(["report", str(log_path), "--reprice-region", region, "--format", "json"]) == 0
    repriced = json.loads(capsys.readouterr().out)["sections"]
    table = next(v for k, v in repriced.items() if k.startswith("Re-priced"))
    plus = next(row for row in table if row["model"] == "qwen-plus")
    records = [r for r in make_records(40) if r.model == "qwen-plus"]
    if offered:
        amounts = [qm.cost(qm.Usage(r.prompt_tokens, r.completion_tokens,
                                    cached_tokens=r.cached_tokens,
                                    reasoning_tokens=r.reasoning_tokens),
                           "qwen-plus", region=region).amount for r in records]
        assert plus["repriced_unpriced_calls"] == amounts.count(None) < len(records)
        assert Decimal(plus["cost_repriced"]) == sum(a for a in amounts if a is not None)
    else:  # a region with no offer of it (us): unpriced, said so, not an error
        assert plus["repriced_unpriced_calls"] == plus["calls"] == len(records)
    response = tmp_path / "responses.jsonl"
    response.write_text(json.dumps({"model": "qwen-plus", "usage": {
        "prompt_tokens": 1000, "completion_tokens": 10, "total_tokens": 1010}}) + "\n")
    assert main(["report", str(response), "--region", region, "--format", "json"]) == 0
    totals = json.loads(capsys.readouterr().out)["sections"]["Totals (per currency)"]
    if offered:
        expected = qm.cost(qm.Usage(1000, 10), "qwen-plus", region=region)
        assert [(r["currency"], Decimal(r["cost"])) for r in totals] == [
            (expected.currency, expected.amount)]
    else:
        assert [r["unpriced_calls"] for r in totals] == [1]


# --- report: the chart file -----------------------------------------------------------------

@pytest.mark.parametrize(("name", "magic"), [
    ("chart.jpg", b"\xff\xd8\xff"), ("chart.jpeg", b"\xff\xd8\xff"), ("chart.png", b"\x89PNG"),
    ("chart.svg", b"<?xml"), ("chart.pdf", b"%PDF"), ("chart.webp", b"RIFF")])
def test_plot_writes_the_format_its_extension_names(log_path, tmp_path, name, magic):
    pytest.importorskip("matplotlib")
    out = tmp_path / name
    assert main(["report", str(log_path), "--plot", str(out), "-q"]) == 0
    assert out.read_bytes().startswith(magic)


def test_plot_refuses_an_extension_it_cannot_write(log_path, tmp_path, capsys):
    out = tmp_path / "chart.bmp"
    assert main(["report", str(log_path), "--plot", str(out)]) == 2
    err = capsys.readouterr().err
    assert "chart.bmp" in err and ".png" in err and ".jpg" in err
    assert not out.exists()


# --- money as people type it --------------------------------------------------------------

@pytest.mark.parametrize(("text", "currency"), [
    ("50 RMB", "CNY"), ("50 元", "CNY"), ("50元", "CNY"), ("¥50", "CNY"), ("￥50", "CNY"),
    ("50 cny", "CNY"), ("CNY 50", "CNY"), ("¥50 CNY", "CNY"), ("$50", "USD"), ("50 USD", "USD"),
    ("50 usd", "USD"), ("US$50", "USD")])
def test_budget_and_report_read_the_same_money(log_path, capsys, text, currency):
    budget = qm.Budget(text)
    assert (budget.limit, budget.currency) == (Decimal(50), currency)
    assert main(["report", str(log_path), "--budget", text, "--format", "json"]) == 0
    sections = json.loads(capsys.readouterr().out)["sections"]
    burn = next((v for k, v in sections.items() if k.startswith("Budget burn-down")), None)
    if currency == "CNY":  # the log is in CNY: a burn-down with every day of it
        assert burn and Decimal(burn[-1]["remaining"]) == 50 - Decimal(burn[-1]["cumulative"])
        assert Decimal(burn[-1]["cumulative"]) > 0
    else:
        assert not burn


@pytest.mark.parametrize("text", ["50 EUR", "50", "$50 CNY", "fifty CNY"])
def test_budget_and_report_refuse_the_same_money(log_path, capsys, text):
    with pytest.raises(qm.ConfigurationError):
        qm.Budget(text)
    assert main(["report", str(log_path), "--budget", text]) == 2
    assert "qwen-meter: error:" in capsys.readouterr().err


def test_a_budget_currency_alias_given_apart():
    assert qm.Budget(5, currency="rmb").currency == "CNY"
    assert qm.Budget("5", currency="$").currency == "USD"
    with pytest.raises(qm.ConfigurationError, match="USD"):
        qm.Budget("5 RMB", currency="USD")


# --- the usage line of the mistyped command -------------------------------------------------

@pytest.mark.parametrize(("argv", "usage"), [
    (["report", "--bogus"], "usage: qwen-meter report"),
    (["count", "hello", "world"], "usage: qwen-meter count"),
    (["log", "compact", "x.jsonl", "--out", "o", "--nope"], "usage: qwen-meter log compact"),
    (["estimate", "r.json", "--colour"], "usage: qwen-meter estimate")])
def test_a_mistyped_option_shows_the_subcommands_usage(capsys, argv, usage):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith(usage) and "unrecognized arguments" in err
    assert "{count,models" not in err  # not the top-level usage


# --- models the catalogue does not list -----------------------------------------------------

def test_count_meters_an_unlisted_model_inexactly(tmp_path, capsys):
    assert main(["count", "--model", "deepseek-v3.2", "你好，世界", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["exact"] is False and got["backend"] == "heuristic"
    assert got["tokens"] == qm.count_tokens("你好，世界", "qwen-plus", backend="heuristic").tokens
    assert any("deepseek-v3.2 is not in the catalogue" in n for n in got["notes"])
    request = tmp_path / "r.json"
    request.write_text(json.dumps({"model": "deepseek-v3.2",
                                   "messages": [{"role": "user", "content": "hi"}]}))
    assert main(["count", "-m", str(request)]) == 0
    out = capsys.readouterr().out
    assert "(estimate; heuristic" in out and "model deepseek-v3.2" in out
    assert "note: deepseek-v3.2 is not in the catalogue" in out


def test_count_of_a_listed_model_stays_exact(capsys):
    assert main(["count", "--model", "qwen-plus", "你好", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["exact"] is True and got["notes"] == []


# --- counts and money as they read ----------------------------------------------------------

def _batch(tmp_path: Path) -> Path:
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps({"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
                                "body": {"model": "qwen-plus", "max_tokens": 10, "messages": [
                                    {"role": "user", "content": "你好"}]}}) + "\n")
    return path


def test_one_of_a_thing_is_singular(tmp_path, capsys, log_path):
    assert main(["estimate", str(_batch(tmp_path)), "--region", "cn"]) == 0
    out = capsys.readouterr().out
    assert "1 request in 1 line," in out and "qwen-plus [cn]: 1 request," in out
    one = write_log(tmp_path / "one-record.jsonl", make_records(1))
    assert main(["report", str(one)]) == 0
    out = capsys.readouterr().out
    assert "\n1 record\n" in out and "(1 call)" in out
    assert "1 records" not in out and "1 calls" not in out


def test_the_batch_estimate_keeps_the_currency_symbol(tmp_path, capsys):
    assert main(["estimate", str(_batch(tmp_path)), "--region", "cn"]) == 0
    out = capsys.readouterr().out
    result = qm.estimate_batch(_batch(tmp_path), region="cn")
    row = result.models["qwen-plus"]
    assert f"→ ¥{row.low.normalize():f} CNY .. ¥{row.high.normalize():f} CNY" in out


def test_metrics_text_is_documented_as_bytes():
    prometheus = pytest.importorskip("qwen_meter.integrations.prometheus")
    from prometheus_client import CollectorRegistry

    assert isinstance(prometheus.metrics_text(CollectorRegistry()), bytes)
    assert "bytes" in (prometheus.metrics_text.__doc__ or "")
    root = Path(__file__).resolve().parent.parent
    for page in ("docs/guides/integrations.md", "docs/zh/guides/integrations.md"):
        text = (root / page).read_text(encoding="utf-8")
        line = next(chunk for chunk in text.split("\n\n") if "metrics_text(" in chunk)
        assert "bytes" in line and ".decode()" in line
