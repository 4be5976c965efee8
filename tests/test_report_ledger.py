"""Reports over a ledger: the same records in a JSONL log, a PostgreSQL ledger and a SQLite
ledger (written by qwen_meter.ledger itself) give the same report, for every grouping and
period; a ledger that cannot be read is a typed error that names it without its password."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import sqlite3
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

pytest.importorskip("duckdb")
pytest.importorskip("pandas")


import qwen_meter as qm
from qwen_meter.cli.main import main
from qwen_meter.ledger import open_ledger
from qwen_meter.ledger.common import mask_url
from qwen_meter.report import ReportInputError, build_report, load_usage, render
from qwen_meter.report.ledger_source import is_ledger_url

START = dt.datetime(2026, 11, 1, 9, 0, tzinfo=dt.timezone.utc)
SHANGHAI = dt.timezone(dt.timedelta(hours=8))
TAGS = ["项目=翻译", "客户:阿里", "团队=北京", "team=a", "env=prod"]


def ledger_records(n: int = 240, seed: int = 3) -> list[qm.UsageRecord]:
    """Records over ten days in CNY, USD and a hand-priced EUR, some unpriced or failed, times
    written with +00:00 and +08:00 offsets, Chinese tags and users."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        model = rng.choice(["qwen-plus", "qwen-flash", "qwen3-max", "mystery-model"])
        region = rng.choice(["cn", "cn", "intl"])
        prompt, completion = rng.randint(1, 200_000), rng.randint(0, 900)
        cached = rng.choice([0, 0, prompt // 4])
        status = rng.choice(["ok"] * 8 + ["error", "incomplete"])
        cost: str | None
        currency: str | None
        unpriced = None
        try:
            priced = qm.cost(qm.Usage(prompt, completion, cached_tokens=cached), model,
                             region=region)
            cost, currency = f"{priced.amount:f}", priced.currency
        except qm.QwenMeterError as exc:
            cost, currency, unpriced = None, None, str(exc)
        if i % 17 == 0:  # a contract price in a third currency
            cost, currency, unpriced = str(Decimal(rng.randint(1, 10**6)) / 10**7), "EUR", None
        if status == "error":
            cost, currency, unpriced, prompt, completion, cached = None, None, None, 0, 0, 0
        when = START + dt.timedelta(minutes=57 * i)
        if i % 2:
            when = when.astimezone(SHANGHAI)
        out.append(qm.UsageRecord(
            model=model, region=region, time=when.isoformat(), status=status,
            prompt_tokens=prompt, completion_tokens=completion,
            total_tokens=prompt + completion, cached_tokens=cached, cost=cost,
            currency=currency, unpriced=unpriced,
            tags=tuple(rng.sample(TAGS, rng.randint(0, 2))),
            user=rng.choice(["alice", "王小明", None]),
            metadata={"key": rng.choice(["ci", "app"]), "team": "北京"}))
    return out


RECORDS = ledger_records()


def _with_password(url: str, password: str) -> str:
    parts = urlsplit(url)
    user = parts.username or "postgres"
    host = parts.hostname or "127.0.0.1"
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}{port}", parts.path,
                       parts.query, parts.fragment))


@pytest.fixture(scope="module")
def jsonl(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ledger") / "usage.jsonl"
    log = qm.JsonlLog(path)
    for r in RECORDS:
        log.append(r)
    log.close()
    return path


def _written(url: str) -> str:
    ledger = open_ledger(url)
    try:
        assert ledger.append_many(RECORDS) == len(RECORDS)
    finally:
        ledger.close()
    return url


@pytest.fixture
def sqlite_ledger(tmp_path) -> str:
    return _written(f"sqlite:///{tmp_path}/ledger.db")  # an absolute path: sqlite:////tmp/…


@pytest.fixture
def pg_ledger(postgres_url) -> str:
    if not os.environ.get("QWEN_METER_REQUIRE_POSTGRES"):
        pytest.importorskip("adbc_driver_postgresql")  # the report reads PostgreSQL with ADBC
    return _written(postgres_url)


@pytest.fixture(params=["sqlite", "postgresql"])
def any_ledger(request) -> str:
    """Each backend in turn (SQLite runs without a PostgreSQL server)."""
    return str(request.getfixturevalue("sqlite_ledger" if request.param == "sqlite"
                                       else "pg_ledger"))


def _json(source: str | Path, **kwargs: object) -> dict[str, object]:
    by = kwargs.pop("by", ["model"])
    report = build_report(load_usage([str(source)], **kwargs), by=by)  # type: ignore[arg-type]
    data = json.loads(render(report, "json"))
    # the unpriced records, named by id: the same ones, each with its source's name
    data["unpriced"] = sorted((u["line"], u["reason"]) for u in data["unpriced"])
    return data


PERIODS = [
    {"tz": "UTC"},
    {"tz": "UTC", "since": dt.date(2026, 11, 3), "until": dt.date(2026, 11, 6)},
    {"tz": "Asia/Shanghai", "since": dt.date(2026, 11, 2)},
    {"tz": "America/Los_Angeles", "until": dt.date(2026, 11, 4)},
    {"tz": "UTC", "since": dt.datetime(2026, 11, 2, 17, 30, tzinfo=SHANGHAI),
     "until": dt.datetime(2026, 11, 5, 3, 0)},
]
GROUPINGS = [["model"], ["model", "day"], ["tag"], ["user", "region"], ["week", "status"]]


# every grouping with two periods, every period with two groupings
CASES = [(by, PERIODS[(i + step) % len(PERIODS)]) for i, by in enumerate(GROUPINGS)
         for step in (0, 2)]


@pytest.mark.parametrize(("by", "period"), CASES,
                         ids=[f"{','.join(b)}-{i}" for i, (b, _) in enumerate(CASES)])
def test_a_ledger_reports_as_the_log(jsonl, any_ledger, by, period):
    kwargs = {**period, "by": by}
    expected = _json(jsonl, **kwargs)
    assert expected["records"] > 0
    assert _json(any_ledger, **kwargs) == expected


def test_ledger_numbers_are_the_records(pg_ledger):
    report = build_report(load_usage(pg_ledger, tz="UTC"), by=["model"])
    assert report.records == len(RECORDS)
    assert set(report.summary.spend) == {"CNY", "USD", "EUR"}
    for currency, spend in report.summary.spend.items():
        assert spend == sum(Decimal(r.cost) for r in RECORDS
                            if r.currency == currency and r.cost is not None)
    tags = build_report(load_usage(pg_ledger, tz="UTC"), by=["tag"]).breakdown
    mine = [r for r in RECORDS if "项目=翻译" in r.tags]
    assert tags[tags["tag"] == "项目=翻译"]["calls"].sum() == len(mine)


def test_files_and_ledgers_in_one_report(jsonl, pg_ledger, sqlite_ledger):
    """Mixed inputs add up (the same records three times over)."""
    one = build_report(load_usage([str(jsonl)], tz="UTC"), by=["model"])
    three = build_report(load_usage([str(jsonl), pg_ledger, sqlite_ledger], tz="UTC"),
                         by=["model"])
    assert three.records == 3 * one.records
    assert three.summary.spend == {c: 3 * v for c, v in one.summary.spend.items()}


def test_pushed_down_period_keeps_the_edges(pg_ledger):
    """Records right at the bounds, in another zone's day, are kept exactly as the log does:
    the ledger's WHERE has slack, the report applies the exact bound."""
    days = {r.time[:10] for r in RECORDS}
    for day in sorted(days)[1:-1]:
        since = dt.date.fromisoformat(day)
        until = since + dt.timedelta(days=1)
        want = [r for r in RECORDS
                if since <= dt.datetime.fromisoformat(r.time).astimezone(SHANGHAI).date() < until]
        data = load_usage(pg_ledger, tz="Asia/Shanghai", since=since, until=until)
        assert len(data) == len(want)


def test_cli_prints_the_same_table(jsonl, pg_ledger, capsys):
    args = ["--by", "model,day", "--tz", "UTC", "--since", "2026-11-02"]
    assert main(["report", str(jsonl), *args]) == 0
    from_file = capsys.readouterr().out
    assert main(["report", pg_ledger, *args]) == 0
    from_ledger = capsys.readouterr().out
    assert "could not be priced" in from_file and "(id " in from_file
    assert from_ledger == from_file.replace(str(jsonl), pg_ledger)
    assert "qwen3-max" in from_ledger


def test_cli_mixes_a_file_and_a_ledger(jsonl, pg_ledger, capsys):
    assert main(["report", str(jsonl), pg_ledger, "--format", "json", "--tz", "UTC"]) == 0
    assert json.loads(capsys.readouterr().out)["records"] == 2 * len(RECORDS)


def test_compact_a_ledger_to_parquet(pg_ledger, jsonl, tmp_path):
    out = tmp_path / "parquet"
    assert main(["log", "compact", pg_ledger, "--out", str(out), "-q"]) == 0
    assert list(out.glob("date=*/part-*.parquet"))
    compacted, logged = (_json(p, tz="UTC", by=["model", "day"]) for p in (out, jsonl))
    # Parquet names an unpriced record by its place in the compacted read, not its id
    assert len(compacted.pop("unpriced")) == len(logged.pop("unpriced"))
    assert compacted == logged


def test_down_server_is_named_without_its_password(postgres_url, capsys):
    url = _with_password(postgres_url, "s3cr3t-pw")
    parts = urlsplit(url)
    down = url.replace(f":{parts.port}", ":1") if parts.port else url.replace("@127.0.0.1",
                                                                                "@127.0.0.1:1")
    with pytest.raises(ReportInputError) as caught:
        build_report(load_usage(down, tz="UTC"))
    message = str(caught.value)
    assert "s3cr3t-pw" not in message and "***" in message
    assert "cannot connect" in message and "127.0.0.1:1" in message
    assert main(["report", down, "-q"]) == 2
    err = capsys.readouterr().err
    assert "s3cr3t-pw" not in err and "cannot connect" in err and "Traceback" not in err


def test_a_database_without_the_table(postgres_url):
    url = _with_password(postgres_url, "hunter2")  # the test server trusts, and ignores it
    with pytest.raises(ReportInputError) as caught:
        build_report(load_usage(url, tz="UTC"))
    message = str(caught.value)
    assert "no records table" in message
    assert "hunter2" not in message and mask_url(url) in message


def test_an_open_ledger_is_read_by_its_url(pg_ledger):
    ledger = open_ledger(pg_ledger)
    try:
        assert len(load_usage(ledger, tz="UTC")) == len(RECORDS)
    finally:
        ledger.close()


def test_sqlite_ledger_errors(tmp_path):
    with pytest.raises(ReportInputError, match="no such ledger file"):
        load_usage(f"sqlite:///{tmp_path}/missing.db")
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(ReportInputError, match="no records table"):
        build_report(load_usage(f"sqlite:///{other}", tz="UTC"))


def test_ledger_urls_and_masking():
    assert is_ledger_url("postgresql://u@h/db") and is_ledger_url("sqlite:///x.db")
    assert is_ledger_url("POSTGRES://u@h/db") and not is_ledger_url("usage.jsonl")
    assert not is_ledger_url("https://example.com/usage.jsonl")
    assert mask_url("postgresql://meter:pa:ss@db:5432/m") == "postgresql://meter:***@db:5432/m"
    assert "x9" not in mask_url("postgresql://db/m?user=u&password=x9&sslmode=require")
    assert mask_url("postgresql://meter@db/m") == "postgresql://meter@db/m"
    data = load_usage("postgresql://meter:topsecret@db/m")
    assert "topsecret" not in repr(data)


@pytest.mark.parametrize("by", ["model", "day", "user"])
def test_the_ledgers_spend_equals_the_report(any_ledger, by):
    """``Ledger.spend`` (the admin API's numbers, summed in SQL) and the report over the same
    ledger agree."""
    since = dt.datetime(2026, 11, 3, tzinfo=dt.timezone.utc)
    report = build_report(load_usage(any_ledger, tz="Asia/Shanghai", since=since), by=[by])
    # the report shows a record without a user as "-", spend as None
    want = {(None if row[by] in (None, "-") else str(row[by]), row.currency):
            (row.calls, row.cost or 0, row.prompt_tokens, row.completion_tokens)
            for _, row in report.breakdown.iterrows()}
    ledger = open_ledger(any_ledger)
    try:
        rows = ledger.spend(by, since=since, tz="Asia/Shanghai")
    finally:
        ledger.close()
    got = {(r.group, r.currency or "-"): (r.calls, r.cost, r.prompt_tokens, r.completion_tokens)
           for r in rows}
    assert got == want


def test_sql_of_a_ledger_says_to_compact_it(capsys):
    assert main(["report", "postgresql://meter:pw123@db/m", "--sql"]) == 2
    err = capsys.readouterr().err
    assert "log compact" in err and "pw123" not in err


def test_progress_bar_names_the_ledger_masked_and_ends_full(pg_ledger, sqlite_ledger):
    import io

    from qwen_meter.report.ledger_source import ledger_chunks
    from qwen_meter.report.sources import Progress

    for url in (_with_password(pg_ledger, "pw-in-url"), sqlite_ledger):
        out = io.StringIO()
        bar = Progress(0, True, stream=out)
        rows = sum(t.num_rows for t in ledger_chunks(url, bar, since=dt.date(2026, 11, 5),
                                                     until=dt.date(2026, 11, 6)))
        assert 0 < rows < len(RECORDS)  # the period was pushed down
        last = out.getvalue().split("\r")[-1]
        assert last.endswith("100%") and mask_url(url) in last and "pw-in-url" not in last
