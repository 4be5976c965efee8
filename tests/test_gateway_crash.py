"""kill -9 of one of two gateway replicas under load: after it restarts on its log and the shared
Redis store, every call the upstream billed has exactly one record (the dead replica's calls
in flight as ``lost``), the budget's committed total equals the records' costs, no hold is
left."""

from __future__ import annotations

import json
import threading
import time
import uuid
from decimal import Decimal

import httpx
import pytest

pytest.importorskip("uvicorn")

from gateway_server import gateway_process

import qwen_meter as qm
from qwen_meter.meter.log import read_jsonl
from qwen_meter.testing.dashscope import FakeDashScope

KEY = "sk-crashTESTclientKEY12345"
STREAMS_PER_REPLICA = 5


def stream(url: str, run: str, n: int, errors: list[str]) -> None:
    body = {"model": "qwen-plus", "stream": True, "stream_options": {"include_usage": True},
            "messages": [{"role": "user", "content": f"crash {run} {n}"}]}
    try:
        with httpx.stream("POST", f"{url}/compatible-mode/v1/chat/completions", json=body,
                          headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as answer:
            for _ in answer.iter_lines():
                pass
    except httpx.HTTPError as exc:  # the replica that is killed drops its clients
        errors.append(type(exc).__name__)


def wait_for(condition: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def test_kill_9_of_a_replica_loses_no_billed_call_and_no_hold(redis_url, tmp_path):
    run = uuid.uuid4().hex[:8]
    fake = FakeDashScope()
    name = f"crash-{run}"
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({
        "store": redis_url, "upstreams": {"default": {"url": fake.url}},
        "budgets": [{"name": name, "limit": "50 CNY", "per": "day"}]}), encoding="utf-8")
    logs = [tmp_path / "replica-a.jsonl", tmp_path / "replica-b.jsonl"]
    total = 2 * STREAMS_PER_REPLICA
    fake.push(*({"slow": 0.4} for _ in range(total)))  # ~3 s per stream: in flight at the kill
    errors: list[str] = []
    try:
        with gateway_process("--config", str(config), "--log", str(logs[1])) as (b, _):
            with gateway_process("--config", str(config), "--log", str(logs[0])) as (a, victim):
                clients = [threading.Thread(target=stream, args=(url, run, n, errors))
                           for n in range(STREAMS_PER_REPLICA) for url in (a, b)]
                for client in clients:
                    client.start()
                # Every request is at the upstream (billed) and streaming: kill -9 one replica.
                wait_for(lambda: len(fake.billed) == total, "the upstream to bill every call")
                victim.kill()
                victim.wait(10)
            with gateway_process("--config", str(config), "--log", str(logs[0])) as (a, _):
                for client in clients:
                    client.join(60)
                # The restarted replica serves again (and is metered as before).
                answer = httpx.post(f"{a}/compatible-mode/v1/chat/completions", timeout=30,
                                    headers={"Authorization": f"Bearer {KEY}"},
                                    json={"model": "qwen-plus", "messages": [
                                        {"role": "user", "content": f"after {run}"}]})
                assert answer.status_code == 200
    finally:
        fake.close()
    records = [r for log in logs for r in read_jsonl(log)]
    assert len(records) == len(fake.billed) == total + 1  # one record per billed call
    assert len({r.id for r in records}) == len(records)
    statuses = [r.status for r in records]
    assert statuses.count("lost") == STREAMS_PER_REPLICA == len(errors)
    assert statuses.count("ok") == STREAMS_PER_REPLICA + 1
    lost = [r for r in read_jsonl(logs[0]) if r.status == "lost"]
    assert all(r.usage_estimated and r.cost and r.currency == "CNY" for r in lost)
    budget = qm.Budget("50 CNY", per="day", name=name, store=qm.open_store(redis_url))
    status = budget.status()
    assert status.reserved == 0  # no hold waits for its lease
    assert status.committed == sum(Decimal(r.cost) for r in records)
