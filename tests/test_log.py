"""The usage log keeps every acknowledged record whole, whatever happens to the writer."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest

import qwen_meter as qm
from qwen_meter.log import JsonlLog, SQLiteLog, UsageRecord, read_jsonl, read_usage, redact


def test_kill_9_loses_no_acknowledged_record(tmp_path):
    path = tmp_path / "usage.jsonl"
    acknowledged: set[str] = set()
    for _ in range(5):
        writer = subprocess.Popen([sys.executable, str(Path(__file__).parent / "log_writer.py"),
                                   str(path)], stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        time.sleep(0.3)
        writer.send_signal(signal.SIGKILL)
        out, _ = writer.communicate()
        acknowledged.update(line for line in out.splitlines() if len(line) == 32)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends on a line boundary: nothing half-written
    stored = {r.id for r in read_jsonl(path)}
    assert acknowledged and acknowledged <= stored


def test_threads_and_processes_never_interleave_lines(tmp_path):
    path = tmp_path / "usage.jsonl"
    log = JsonlLog(path)

    def write(n: int) -> None:
        for i in range(200):
            log.append(UsageRecord(model="qwen-plus", prompt_tokens=i, tags=("t" * (i * 37),)))

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(read_jsonl(path)) == 1600


def test_sqlite_log_round_trip(tmp_path):
    log = SQLiteLog(tmp_path / "usage.db")
    log.append(UsageRecord(model="qwen-plus", cost="0.1", currency="CNY", tags=("a",)))
    log.close()
    (record,) = read_usage(tmp_path / "usage.db")
    assert record.cost == "0.1" and record.tags == ("a",)


def test_records_read_from_newer_versions_ignore_unknown_fields():
    record = UsageRecord.from_dict({"model": "m", "future_field": 1, "tags": ["x"]})
    assert record.model == "m" and record.tags == ("x",)


def test_redaction():
    assert redact("Incorrect API key provided: sk-abcdef123456") == \
        "Incorrect API key provided: sk-ab***"
    assert redact("Authorization: Bearer abc.def") == "Authorization: Bearer ***"


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_share_budget_and_limiter_through_the_wrapper(kind, tmp_path, request):
    pytest.importorskip("openai")
    from fake_dashscope import FakeDashScope
    from meter_worker import run

    server = FakeDashScope()
    try:
        store = f"sqlite:///{tmp_path / 'state.db'}" if kind == "sqlite" \
            else request.getfixturevalue("redis_url")
        if kind == "redis":
            import redis

            redis.Redis.from_url(store).flushdb()
        log_path = str(tmp_path / "usage.jsonl")
        context = multiprocessing.get_context("spawn")
        with context.Pool(4) as pool:
            done = pool.starmap(run, [(server.compatible, store, log_path, 6)] * 4)
        logged = [r for r in read_usage(log_path) if r.status == "ok"]  # refusals recorded too
        assert len(logged) == sum(done) > 0
        budget = qm.Budget("0.0005 CNY", name="shared", store=store)
        status = budget.status()
        assert status.committed == sum(Decimal(r.cost) for r in logged) <= Decimal("0.0005")
        assert status.reserved == 0
    finally:
        server.close()
