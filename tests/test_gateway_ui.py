"""The dashboard at the gateway's /ui: the page for anyone, its API behind the admin token, its
numbers those of the gateway's own records (a SQLite ledger here, or the usage log), the
budgets of the gateway's keys and its users / teams; no /ui without an admin token."""

from __future__ import annotations

import re
from decimal import Decimal

import httpx
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("duckdb")

from gateway_server import running_gateway
from test_gateway_admin import CHAT, TOKEN, admin, chat, fake, fleet_config  # noqa: F401

from qwen_meter.gateway import create_app
from qwen_meter.gateway.config import parse_config
from qwen_meter.ledger import open_ledger


@pytest.fixture
def env(monkeypatch):
    monkeypatch.setenv("QM_TEST_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("QM_TEST_REAL_KEY", "sk-REALupstreamKEY0123456789")


def test_ui_over_the_ledger_behind_the_admin_token(fake, tmp_path, env):  # noqa: F811
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    app = create_app(fleet_config(fake, url))
    with running_gateway(app) as base:
        made = admin(base, "POST", "/admin/keys", {"name": "客服", "budget": "5 CNY/day",
                                                   "rpm": 100, "tpm": 100000, "user": "张三",
                                                   "tags": ["feature=智能客服"]})
        assert made.status_code == 201, made.text
        key = made.json()["key"]
        assert admin(base, "PUT", "/admin/budgets/team/search/monthly",
                     {"limit": "50 CNY", "per": "month"}).status_code in (200, 201)
        for text in ("一", "二", "三"):
            assert chat(base, key, text).status_code == 200

        page = httpx.get(f"{base}/ui/", timeout=30)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        # the page's scripts, each by its digest, all served under /ui to anyone
        scripts = re.findall(r'<script type="module" src="(assets/([a-z0-9_-]+)\.js\?v=\w+)"',
                             page.text)
        assert [name for _, name in scripts][:2] == ["i18n", "core"] and len(scripts) > 5
        for ref, name in scripts:
            script = httpx.get(f"{base}/ui/{ref}", timeout=30)
            assert script.status_code == 200, name
            assert script.headers["content-type"] == "text/javascript; charset=utf-8"
            assert "immutable" in script.headers["cache-control"]
        assert httpx.get(f"{base}/ui/api/overview", timeout=30).status_code == 401
        wrong = httpx.get(f"{base}/ui/api/overview", timeout=30,
                          headers={"Authorization": "Bearer not-the-token"})
        assert wrong.status_code == 401 and "error" in wrong.json()

        headers = {"Authorization": f"Bearer {TOKEN}"}
        overview = httpx.get(f"{base}/ui/api/overview", headers=headers, timeout=60).json()
        ledger = open_ledger(url)
        try:
            records = list(ledger)
        finally:
            ledger.close()
        assert overview["calls"] == len(records) == 3
        spent = sum(Decimal(r.cost) for r in records if r.cost)
        assert Decimal(overview["cost"]["CNY"]) == spent > 0
        budgets = {(b["scope"], b["subject"], b["name"]) for b in overview["budgets"]}
        assert any(scope == "key" and subject == "客服" for scope, subject, _ in budgets)
        assert ("team", "search", "monthly") in budgets
        # The key's limiter window as the gateway's store holds it now: three requests.
        limiter = overview["live_state"]["limiter"]
        assert [(r["subject"], r["requests"], r["rpm"]) for r in limiter] == [("客服", 3, 100)]
        assert limiter[0]["tokens"] == sum(r.prompt_tokens + r.completion_tokens
                                           for r in records)
        top = httpx.get(f"{base}/ui/api/top", params={"by": "user"}, headers=headers,
                        timeout=30).json()
        assert [row["name"] for row in top["rows"]] == ["张三"]


def test_no_ui_without_an_admin_token(fake, tmp_path, env):  # noqa: F811
    app = create_app(parse_config({"log": str(tmp_path / "usage.jsonl"), "upstreams": {
        "default": {"url": fake.url, "api_key_env": "QM_TEST_REAL_KEY"}}}))
    with running_gateway(app) as base:
        answer = httpx.get(f"{base}/ui/", timeout=30)
        assert answer.status_code == 404
        assert answer.json()["error"]["code"] == "not_found"


def test_dashboard_command_over_a_fleet_config(tmp_path, monkeypatch):
    """`qwen-meter dashboard --config gateway.yaml` of a fleet: the ledger's records and the
    budgets of the ledger's keys, users and teams (not only the YAML's)."""
    import argparse

    from qwen_meter.cli.dashboard import build_app
    from qwen_meter.ledger import BudgetSpec, KeyEntry, ScopeBudget, hash_key
    from qwen_meter.meter.log import UsageRecord

    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger = open_ledger(url)
    try:
        ledger.create_key(KeyEntry(name="客服", hash=hash_key("sk-qm-x" * 5), user="张三",
                                   budgets=(BudgetSpec("daily", "5 CNY", "day"),)))
        ledger.set_budget(ScopeBudget("team", "search", BudgetSpec("monthly", "50 CNY", "month")))
        ledger.append_many([UsageRecord(model="qwen-plus", prompt_tokens=10, cost="0.25",
                                        currency="CNY", tags=("key=客服",), user="张三")])
    finally:
        ledger.close()
    config = tmp_path / "gateway.yaml"
    config.write_text(f"ledger: {url}\nupstreams: {{default: {{api_key_env: QM_TEST_REAL_KEY}}}}\n",
                      encoding="utf-8")
    args = argparse.Namespace(sources=[], config=str(config), tz="UTC", title=None, refresh=10)
    app = build_app(args)
    try:
        overview = app.views.answer("overview", {})
    finally:
        app.views.records.close()
    assert overview["calls"] == 1 and overview["cost"] == {"CNY": "0.25"}
    budgets = {(b["scope"], b["subject"], b["name"]) for b in overview["budgets"]}
    assert {("key", "客服", "daily"), ("team", "search", "monthly")} <= budgets
