"""Two gateway processes sharing one real Redis enforce one RPM and one budget per key."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import httpx
import pytest

pytest.importorskip("uvicorn")

from gateway_server import gateway_process

import qwen_meter as qm
from qwen_meter.gateway.keys import hash_key, new_key
from qwen_meter.meter.log import read_jsonl
from qwen_meter.testing.dashscope import FakeDashScope

REAL_KEY = "sk-REALsharedKEY9876543210"


@pytest.fixture(scope="module")
def fake():
    server = FakeDashScope()
    yield server
    server.close()


def fire(urls: list[str], key: str, body: dict, n: int) -> list[httpx.Response]:
    def one(i: int) -> httpx.Response:
        return httpx.post(f"{urls[i % len(urls)]}/compatible-mode/v1/chat/completions",
                          headers={"Authorization": f"Bearer {key}"}, json=body, timeout=30)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def test_two_replicas_one_rpm_and_one_budget(fake, redis_url, tmp_path):
    run = uuid.uuid4().hex[:8]
    rpm_key, budget_key = new_key(), new_key()
    rpm_name, budget_name = f"rpm-{run}", f"budget-{run}"
    budget_body = {"model": "qwen-plus", "max_tokens": 20,
                   "messages": [{"role": "user", "content": f"budget {run}"}]}
    high = qm.estimate_cost(budget_body, "qwen-plus").high.amount
    limit = (high * Decimal("3.5")).quantize(Decimal("0.0000001"))
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({
        "store": redis_url,
        "upstreams": {"default": {"url": fake.url, "api_key_env": "QM_SHARED_KEY"}},
        "keys": [{"name": rpm_name, "hash": hash_key(rpm_key), "rpm": 4},
                 {"name": budget_name, "hash": hash_key(budget_key),
                  "budgets": [{"name": "daily", "limit": f"{limit} CNY", "per": "day"}]}],
    }), encoding="utf-8")
    logs = [tmp_path / "gw-1.jsonl", tmp_path / "gw-2.jsonl"]
    env = {"QM_SHARED_KEY": REAL_KEY}
    with gateway_process("--config", str(config), "--log", str(logs[0]), env=env) as (a, p1), \
            gateway_process("--config", str(config), "--log", str(logs[1]), env=env) as (b, p2):
        rpm_body = {"model": "qwen-flash", "messages": [{"role": "user",
                                                          "content": f"rpm {run}"}]}
        answers = fire([a, b], rpm_key, rpm_body, 12)
        statuses = sorted(r.status_code for r in answers)
        assert statuses == [200] * 4 + [429] * 8
        assert all(r.headers.get("retry-after") for r in answers if r.status_code == 429)
        budget_answers = fire([a, b], budget_key, budget_body, 12)
        assert {r.status_code for r in budget_answers} <= {200, 403}
        admitted = sum(r.status_code == 200 for r in budget_answers)

    for output in (*p1.output, *p2.output):  # what the gateways printed
        assert REAL_KEY not in output and rpm_key not in output and budget_key not in output
    for log in logs:
        text = log.read_text(encoding="utf-8")
        assert REAL_KEY not in text and rpm_key not in text and budget_key not in text
    records = [r for log in logs for r in read_jsonl(log)]
    upstream = [q for q in fake.requests if run in json.dumps(q["body"], ensure_ascii=False)]
    for name, content in ((rpm_name, f"rpm {run}"), (budget_name, f"budget {run}")):
        sent = [q for q in upstream if q["body"]["messages"][0]["content"] == content]
        done = [r for r in records if f"key={name}" in r.tags and r.status != "refused"]
        assert len(done) == len(sent)  # every upstream call has exactly one record
        assert all(r.status == "ok" and not r.usage_estimated for r in done)
        assert all(q["headers"]["authorization"] == f"Bearer {REAL_KEY}" for q in sent)
    assert {len([r for r in read_jsonl(log)]) > 0 for log in logs} == {True}  # both served
    budget = qm.Budget(f"{limit} CNY", per="day", scope="key", name="daily",
                       store=qm.open_store(redis_url))
    status = budget.status(f"key={budget_name}")
    assert status.reserved == 0 and status.committed <= limit
    assert admitted >= 3
    committed = sum(Decimal(r.cost) for r in records
                    if f"key={budget_name}" in r.tags and r.status != "refused")
    assert committed == status.committed
