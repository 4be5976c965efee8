"""The usage log keeps every acknowledged record whole, whatever happens to the writer."""

from __future__ import annotations

import multiprocessing
import os
import signal
import subprocess
import sys
import threading
import time
import warnings
from decimal import Decimal
from pathlib import Path

import pytest

import qwen_meter as qm
from qwen_meter.meter.log import (
    JsonlLog,
    SQLiteLog,
    TornLineWarning,
    UsageRecord,
    read_jsonl,
    read_usage,
    redact,
)


def test_kill_9_loses_no_acknowledged_record(tmp_path):
    path = tmp_path / "usage.jsonl"
    acknowledged: set[str] = set()
    for _ in range(5):
        # Killed 0.3 s after its first acknowledged record, not 0.3 s after the start: on a
        # loaded machine the interpreter alone can take longer than that to start.
        acknowledged |= _killed_writer(path, None, delay=0.3)
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # the file ends on a line boundary: nothing half-written
    stored = {r.id for r in read_jsonl(path)}
    assert acknowledged and acknowledged <= stored


def _killed_writer(path: Path, size: int | None, delay: float) -> set[str]:
    """Start a writer of ``size``-byte records, kill -9 it ``delay`` s after its first
    acknowledged record; the ids it acknowledged."""
    writer = subprocess.Popen([sys.executable, str(Path(__file__).parent / "log_writer.py"),
                               str(path), *([] if size is None else [str(size)])],
                              stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    assert writer.stdout is not None
    first = writer.stdout.readline().strip()
    time.sleep(delay)
    writer.send_signal(signal.SIGKILL)
    out, _ = writer.communicate()
    return {first, *(line for line in out.splitlines() if len(line) == 32)}


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="kill -9 is POSIX")
@pytest.mark.parametrize(("size", "rounds"), [(64 * 1024, 12), (4 * 1024 * 1024, 6)])
def test_kill_9_mid_write_of_large_records_then_another_writer(size, rounds, tmp_path):
    path = tmp_path / "usage.jsonl"
    acknowledged: set[str] = set()
    for n in range(rounds):
        # Kills land at different points: in the JSON encoding, in the write, between writes.
        acknowledged |= _killed_writer(path, size, delay=0.002 * (n % 5))
    log = JsonlLog(path)  # the next writer, after the last kill
    after = []
    for n in range(3):
        record = UsageRecord(model="qwen-plus", prompt_tokens=n)
        log.append(record)
        after.append(record.id)
    log.close()
    torn: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TornLineWarning)
        stored = {r.id for r in read_jsonl(path, torn=torn)}
    assert acknowledged <= stored  # every acknowledged record is whole and readable
    assert set(after) <= stored  # and the next writer's records were not glued to a fragment
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert len(stored) + len(torn) == sum(1 for line in lines if line.strip())


def test_writer_that_finds_a_torn_tail_starts_a_new_line(tmp_path):
    path = tmp_path / "usage.jsonl"
    whole = UsageRecord(model="qwen-plus")
    path.write_bytes((whole.to_json() + "\n").encode() + b'{"model": "qwen-plus", "id": "ab')
    log = JsonlLog(path)
    record = UsageRecord(model="qwen-max")
    log.append(record)
    log.append(UsageRecord(model="qwen-turbo"))
    log.close()
    with pytest.warns(TornLineWarning, match=r"line 2: torn record skipped"):
        records = read_usage(path)
    assert [r.id for r in records][:2] == [whole.id, record.id]
    assert [r.model for r in records] == ["qwen-plus", "qwen-max", "qwen-turbo"]


def test_torn_line_in_the_middle_and_at_the_end(tmp_path):
    path = tmp_path / "usage.jsonl"
    good = UsageRecord(model="m").to_json()
    path.write_bytes(f"{good}\n{good[:20]}\n{good}\n{good[:-1]}".encode())
    torn: list[int] = []
    with pytest.warns(TornLineWarning):
        records = read_jsonl(path, torn=torn)
    assert len(records) == 2 and torn == [2, 4]


def test_report_readers_skip_and_name_torn_lines(tmp_path):
    pytest.importorskip("pyarrow")
    from qwen_meter.report.read import load_usage

    path = tmp_path / "usage.jsonl"
    good = UsageRecord(model="qwen-plus", prompt_tokens=3, cost="0.1", currency="CNY").to_json()
    path.write_bytes(f"{good}\n{good[:40]}\n{good}\n{good[:-7]}".encode())
    data = load_usage(path)
    assert len(data) == 2
    assert [(s.line, s.source) for s in data.skipped] == [(2, str(path)), (4, str(path))]


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


@pytest.mark.parametrize(("text", "secret"), [
    ('{"headers": {"Authorization": "Bearer eyJhbGciOiJIUzI1NiJ9.abc"}}', "eyJhbGciOiJIUzI1NiJ9"),
    ("authorization: Basic dXNlcjpwYXNz", "dXNlcjpwYXNz"),
    ("Proxy-Authorization=Token 0123456789abcdef", "0123456789abcdef"),
    ("bearer a1b2c3d4e5f6g7h8", "a1b2c3d4e5f6g7h8"),
    ("X-DashScope-ApiKey: 7f3c9a0b1e2d4f56", "7f3c9a0b1e2d4f56"),
    ("https://x/v1?api_key=QWxhZGRpbjpvcGVu&model=qwen", "QWxhZGRpbjpvcGVu"),
    ('{"api-key": "k-98765432109876543210"}', "k-98765432109876543210"),
    ("access_token=ya29.a0AfH6SMBxxxxxxxx", "ya29.a0AfH6SMBxxxxxxxx"),
    ("the key sk-proj-ABCDEFGHIJKLMNOP was refused", "ABCDEFGHIJKLMNOP"),
    ("token eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dozjgNryP4J3jVmNHl0w5N",
     "eyJzdWIiOiIxMjM0In0"),
    ("password: 'hunter2hunter2'", "hunter2hunter2"),
])
def test_secrets_masked_by_shape(text, secret):
    masked = redact(text)
    assert secret not in masked and "***" in masked


def test_ordinary_text_is_left_alone():
    for text in ("Incorrect model name qwen-plux", "Range of input length should be [1, 30720]",
                 "tokens: 1234, skipped", "ask-me-anything", "Bearer"):
        assert redact(text) == text


def test_secrets_masked_by_value(monkeypatch):
    odd_key = "4f1e0c9a-odd-shaped-key-7b2d"  # not sk-..., not after a header name
    assert redact(f"server said: invalid key {odd_key}") == f"server said: invalid key {odd_key}"
    assert odd_key not in redact(f"invalid key {odd_key}", secrets=[odd_key])
    monkeypatch.setenv("DASHSCOPE_API_KEY", "ds-env-key-0123456789")
    assert "ds-env-key-0123456789" not in redact("echo ds-env-key-0123456789 back")
    qm.register_secret("registered-key-55555")
    assert redact("x registered-key-55555 y") == "x *** y"
    qm.register_secret("short")  # too short to mask by value: it would mask ordinary words
    assert redact("a short note") == "a short note"


def test_wrapped_clients_key_never_reaches_a_record(tmp_path):
    openai = pytest.importorskip("openai")

    key = "odd-shaped-client-key-31415926"  # no shape gives it away: only its value can
    meter = qm.Meter(log=tmp_path / "usage.jsonl")
    meter.wrap(openai.OpenAI(api_key=key, base_url="http://127.0.0.1:9/v1", max_retries=0))
    call = meter.begin({"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}]})
    record = call.fail(RuntimeError(f"upstream echoed the key back: {key}"))
    meter.close()
    assert key not in (record.error or "") and "***" in (record.error or "")
    assert key not in (tmp_path / "usage.jsonl").read_text()


@pytest.mark.parametrize("kind", ["sqlite", "redis"])
def test_processes_share_budget_and_limiter_through_the_wrapper(kind, tmp_path, request):
    pytest.importorskip("openai")
    from meter_worker import run

    from qwen_meter.testing.dashscope import FakeDashScope

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


def test_dashscope_module_key_is_masked_once_wrapped(monkeypatch):
    dashscope = pytest.importorskip("dashscope")
    monkeypatch.setattr(dashscope, "api_key", "ds-module-key-271828182", raising=False)
    qm.Meter(log=None).wrap(dashscope.Generation)
    assert redact("server echoed ds-module-key-271828182") == "server echoed ***"


def test_a_fragment_left_after_this_logs_own_write_is_still_seen(tmp_path):
    # The log skips reading the last byte while the file is as long as its own last write
    # left it; a fragment another (killed) writer appended since changes that size, and the
    # next record must still start on a line of its own.
    path = tmp_path / "usage.jsonl"
    log = JsonlLog(path)
    first = UsageRecord(model="qwen-plus")
    log.append(first)
    with open(path, "ab") as other:
        other.write(b'{"model": "qwen-max", "id": "cut sho')
    second = UsageRecord(model="qwen-turbo")
    log.append(second)
    third = UsageRecord(model="qwen-flash")
    log.append(third)
    log.close()
    with pytest.warns(TornLineWarning, match="line 2"):
        records = read_jsonl(path)
    assert [r.id for r in records] == [first.id, second.id, third.id]
