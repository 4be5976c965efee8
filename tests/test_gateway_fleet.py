"""A fleet: three gateway processes on one PostgreSQL ledger and one Redis store (and two on
one SQLite ledger), the DashScope stand-in upstream, curl and the openai SDK as clients.

A key created through the admin API of one replica works on the others; revoked on another,
every replica answers 401 (how fast — under 2 s — is measured in benchmarks/bench_fleet_keys.py,
not asserted here); the ledger holds one record
per call the upstream billed; ``GET /admin/spend`` sums exactly those records; no key leaks.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
import uuid
from contextlib import ExitStack
from decimal import Decimal

import httpx
import pytest

pytest.importorskip("uvicorn")

from gateway_server import ROOT, eventually, gateway_process

from qwen_meter.ledger import open_ledger
from qwen_meter.testing import FakeDashScope

TOKEN = "fleet-admin-token-0123456789abcdef"
REAL = "sk-REALfleetUPSTREAM0123456789"
ENV = {"QM_FLEET_ADMIN_TOKEN": TOKEN, "QM_FLEET_REAL_KEY": REAL}
CURL = shutil.which("curl")


@pytest.fixture(scope="module")
def fake():
    with FakeDashScope() as server:
        yield server


def curl(url: str, key: str | None, body: dict | None = None, method: str = "POST"
         ) -> tuple[int, dict]:
    """One request with the real curl: (status, JSON body)."""
    assert CURL, "curl is needed"
    args = [CURL, "-s", "-o", "-", "-w", "\n%{http_code}", "-X", method, url,
            "-H", "Content-Type: application/json"]
    if key:
        args += ["-H", f"Authorization: Bearer {key}"]
    if body is not None:
        args += ["--data-binary", json.dumps(body)]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    text, _, status = out.rpartition("\n")
    return int(status), json.loads(text) if text else {}


def chat_body(content: str, model: str = "qwen-plus") -> dict:
    return {"model": model, "max_tokens": 16, "messages": [{"role": "user",
                                                            "content": content}]}



def report_rows(ledger_url: str, by: str) -> dict:
    """``qwen-meter report LEDGER --by BY --format json`` (a real process): (group, currency)
    -> (cost, calls)."""
    done = subprocess.run([sys.executable, "-m", "qwen_meter.cli", "report", ledger_url,
                           "--by", by, "--format", "json", "--tz", "UTC"], cwd=str(ROOT),
                          capture_output=True, text=True, timeout=120,
                          env={**__import__("os").environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["sections"][f"By {by}"]
    return {(row[by], row["currency"]): (Decimal(str(row["cost"])), int(row["calls"]))
            for row in rows}


def settled_records(url: str, count: int) -> list:
    deadline = time.monotonic() + 30
    while True:
        with open_ledger(url) as ledger:
            records = [r for r in ledger if r.status not in ("pending", "refused")]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


@pytest.fixture(params=["postgresql", "sqlite"])
def fleet(request, fake, tmp_path):
    """(replica URLs, ledger URL, processes): 3 on PostgreSQL + Redis, 2 on SQLite."""
    if request.param == "postgresql":
        ledger = request.getfixturevalue("postgres_url")
        store = request.getfixturevalue("redis_url")
        count = 3
    else:
        ledger = f"sqlite:///{tmp_path / 'ledger.db'}"
        store = f"sqlite:///{tmp_path / 'store.db'}"
        count = 2
    config = tmp_path / "gateway.yaml"
    config.write_text(json.dumps({
        "store": store, "ledger": ledger, "admin_token_env": "QM_FLEET_ADMIN_TOKEN",
        "upstreams": {"default": {"url": fake.url, "api_key_env": "QM_FLEET_REAL_KEY"}},
    }), encoding="utf-8")
    with ExitStack() as stack:
        started = [stack.enter_context(gateway_process("--config", str(config), env=ENV))
                   for _ in range(count)]
        yield [url for url, _ in started], ledger, [p for _, p in started]


@pytest.mark.skipif(CURL is None, reason="curl is not installed")
def test_fleet_keys_live_records_and_spend(fleet, fake):
    openai = pytest.importorskip("openai")
    urls, ledger_url, processes = fleet
    run = uuid.uuid4().hex[:8]
    name = f"team-{run}"
    billed_before = len(fake.billed)

    # 401 JSON for a missing or wrong admin token, on every replica
    for url in urls:
        for token in (None, "wrong-token"):
            status, body = curl(f"{url}/admin/keys", token, method="GET")
            assert status == 401 and body["error"]["type"] == "authentication_error"

    # created on replica 1 ...
    status, made = curl(f"{urls[0]}/admin/keys", TOKEN,
                        {"name": name, "user": f"u-{run}", "team": "search", "rpm": 1000,
                         "budget": ["50 CNY/day", "500 CNY/month"]})
    assert status == 201, made
    key = made["key"]
    assert made["name"] == name and key.startswith("sk-qm-")

    # ... it works on every replica (openai SDK and curl)
    def works_on(url: str) -> bool:
        return curl(f"{url}/compatible-mode/v1/chat/completions", key,
                    chat_body(f"hello {run}"))[0] == 200

    for url in urls[1:]:
        assert eventually(lambda url=url: works_on(url)), f"key not live on {url}"
    calls = len(urls) - 1
    for n, url in enumerate(urls):
        client = openai.OpenAI(api_key=key, base_url=f"{url}/compatible-mode/v1",
                               max_retries=0)
        reply = client.chat.completions.create(**chat_body(f"sdk {n} {run}", "qwen-flash"))
        assert reply.choices[0].message.content
        stream = client.chat.completions.create(**chat_body(f"stream {n} {run}"), stream=True)
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        calls += 2

    # revoked on replica 2: 401 on all of them
    status, revoked = curl(f"{urls[1]}/admin/keys/{name}", TOKEN, method="DELETE")
    assert status == 200 and revoked["revoked"] is True
    answered = []  # calls that got in before the revocation reached that replica

    for url in urls:
        def refused(url: str = url) -> bool:
            status, body = curl(f"{url}/compatible-mode/v1/chat/completions", key,
                                chat_body(f"after revoke {run}"))
            answered.append(status)
            return status == 401 and body["error"]["code"] == "invalid_api_key"

        assert eventually(refused), f"revoked key still served on {url}"

    # records in the ledger == calls the upstream billed
    billed = fake.billed[billed_before:]
    records = settled_records(ledger_url, len(billed))
    assert set(answered) <= {200, 401}
    assert len(billed) == calls + answered.count(200)
    assert len(records) == len(billed)
    assert sorted(r.model for r in records) == sorted(b["model"] for b in billed)
    assert all(r.status == "ok" and f"key={name}" in r.tags and "team=search" in r.tags
               for r in records)
    assert len({r.metadata.get("gateway") for r in records}) == len(urls)  # all served

    # spend from any replica equals summing the records, per currency, as decimal strings
    for by, group in (("key", lambda r: name), ("user", lambda r: r.user),
                      ("team", lambda r: "search"), ("model", lambda r: r.model)):
        status, spend = curl(f"{urls[-1]}/admin/spend?by={by}", TOKEN, method="GET")
        assert status == 200
        want: dict = {}
        for r in records:
            cost, count = want.get((group(r), r.currency), (Decimal(0), 0))
            want[(group(r), r.currency)] = (cost + Decimal(r.cost), count + 1)
        got = {(row[by], row["currency"]): (Decimal(row["cost"]), row["calls"])
               for row in spend["rows"]}
        assert got == want, by
        if by in ("user", "model"):  # the same numbers as a report over the same ledger
            assert report_rows(ledger_url, by) == got, by
        assert all(re.fullmatch(r"\d+\.\d+|0", row["cost"]) for row in spend["rows"])

    # no secret in any admin answer, in the ledger's records, or in what the replicas print
    answers = [curl(f"{u}{p}", TOKEN, method="GET")[1] for u in urls
               for p in ("/admin/keys", f"/admin/keys/{name}", "/admin/spend?by=key",
                         "/admin/budgets")]
    text = json.dumps(answers) + "".join(json.dumps(r.to_dict()) for r in records)
    assert key not in text and "sha256:" not in text and REAL not in text and TOKEN not in text
    for process in processes:
        process.terminate()
    for process in processes:
        out, err = process.communicate(timeout=30)
        process.output = (out, err)
        for secret in (key, REAL, TOKEN, key[6:]):
            assert secret not in out and secret not in err


def test_a_key_changed_on_one_replica_changes_everywhere(fleet):
    urls, _, _ = fleet
    name = f"limits-{uuid.uuid4().hex[:8]}"
    made = httpx.post(f"{urls[0]}/admin/keys", json={"name": name, "models": ["qwen-plus"]},
                      headers={"Authorization": f"Bearer {TOKEN}"}).json()
    chat = f"{urls[-1]}/compatible-mode/v1/chat/completions"

    def status(model: str) -> int:
        return httpx.post(chat, json=chat_body("x", model), timeout=30,
                          headers={"Authorization": f"Bearer {made['key']}"}).status_code

    assert eventually(lambda: status("qwen-plus") == 200)
    assert status("qwen-flash") == 403
    changed = httpx.patch(f"{urls[0]}/admin/keys/{name}", json={"models": ["qwen-flash"]},
                          headers={"Authorization": f"Bearer {TOKEN}"})
    assert changed.status_code == 200
    assert eventually(lambda: status("qwen-flash") == 200 and status("qwen-plus") == 403)


def test_a_team_budget_holds_across_replicas(fleet):
    """One team budget, set on replica 1, spent by two keys of the team through every
    replica: the calls stop at the limit, and its committed spend is the records' sum."""
    import qwen_meter as qm

    urls, ledger_url, _ = fleet
    run = uuid.uuid4().hex[:8]
    team = f"t-{run}"
    admin = {"Authorization": f"Bearer {TOKEN}"}
    body = chat_body(f"team {run}")
    high = qm.estimate_cost(body, "qwen-plus").high.amount
    limit = (high * Decimal("3.5")).quantize(Decimal("0.0000001"))
    put = httpx.put(f"{urls[0]}/admin/budgets/team/{team}/daily", headers=admin,
                    json={"limit": f"{limit} CNY", "per": "day"})
    assert put.status_code == 200, put.text
    keys = [httpx.post(f"{urls[0]}/admin/keys", headers=admin, json={
        "name": f"{team}-{n}", "team": team, "user": f"u{n}-{run}"}).json()["key"]
        for n in range(2)]
    statuses = []
    for n in range(20):
        url, key = urls[n % len(urls)], keys[n % 2]
        answer = httpx.post(f"{url}/compatible-mode/v1/chat/completions", json=body,
                            headers={"Authorization": f"Bearer {key}"}, timeout=30)
        if answer.status_code == 401:  # not live on that replica yet
            time.sleep(0.1)
            continue
        statuses.append(answer.status_code)
        if answer.status_code == 403:
            assert answer.json()["error"]["code"] == "budget_exceeded"
            assert team in answer.json()["error"]["message"]
            break
    assert statuses[-1] == 403 and statuses.count(200) >= 3
    records = [r for r in settled_records(ledger_url, 0) if f"team={team}" in r.tags]
    deadline = time.monotonic() + 30
    while len(records) < statuses.count(200) and time.monotonic() < deadline:
        time.sleep(0.1)
        records = [r for r in settled_records(ledger_url, 0) if f"team={team}" in r.tags]
    assert len(records) == statuses.count(200)
    row = httpx.get(f"{urls[-1]}/admin/budgets/team/{team}/daily", headers=admin).json()
    assert Decimal(row["committed"]) == sum(Decimal(r.cost) for r in records) <= limit
    assert row["reserved"] == "0"
