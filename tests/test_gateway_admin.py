"""The admin API of a gateway on a real SQLite ledger (uvicorn in a thread, the DashScope
stand-in upstream, httpx and the openai SDK as clients): keys created, changed and revoked,
user / team budgets enforced, spend equal to the records, 401 JSON, no secret anywhere."""

from __future__ import annotations

import json
import logging
import re
import time
from decimal import Decimal

import httpx
import pytest

pytest.importorskip("uvicorn")

from gateway_server import eventually, running_gateway

import qwen_meter as qm
from qwen_meter.base.errors import GatewayConfigError
from qwen_meter.gateway import create_app
from qwen_meter.gateway.admin import ROUTES
from qwen_meter.gateway.admin_openapi import document
from qwen_meter.gateway.config import parse_config
from qwen_meter.ledger import open_ledger
from qwen_meter.testing import FakeDashScope

TOKEN = "admin-token-for-tests-0123456789"
REAL = "sk-REALupstreamKEY0123456789"
CHAT = "/compatible-mode/v1/chat/completions"


@pytest.fixture(scope="module")
def fake():
    with FakeDashScope() as server:
        yield server


def fleet_config(fake, ledger_url, store="memory://", **more):
    return parse_config({"store": store, "ledger": ledger_url,
                         "admin_token_env": "QM_TEST_ADMIN_TOKEN",
                         "upstreams": {"default": {"url": fake.url,
                                                   "api_key_env": "QM_TEST_REAL_KEY"}},
                         **more})


@pytest.fixture
def gateway(fake, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("QM_TEST_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("QM_TEST_REAL_KEY", REAL)
    caplog.set_level(logging.INFO)
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    app = create_app(fleet_config(fake, url))
    with running_gateway(app) as base:
        yield base, url, app


def admin(base, method, path, body=None, token=TOKEN):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.request(method, f"{base}{path}", json=body, headers=headers, timeout=30)


def chat(base, key, content="hello", model="qwen-plus"):
    return httpx.post(f"{base}{CHAT}", headers={"Authorization": f"Bearer {key}"},
                      json={"model": model, "max_tokens": 20,
                            "messages": [{"role": "user", "content": content}]}, timeout=30)


def test_keys_created_used_changed_revoked(gateway, fake, caplog):
    base, url, app = gateway
    made = admin(base, "POST", "/admin/keys", {"name": "search", "budget": "5 CNY/day",
                                               "rpm": 100, "user": "alice", "team": "search",
                                               "tags": ["project=x"], "models": ["qwen-plus"]})
    assert made.status_code == 201, made.text
    key = made.json()["key"]
    assert made.json()["name"] == "search" and key.startswith("sk-qm-")
    assert admin(base, "POST", "/admin/keys", {"name": "search"}).status_code == 409

    answer = chat(base, key, "first")
    assert answer.status_code == 200, answer.text
    assert fake.requests[-1]["headers"]["authorization"] == f"Bearer {REAL}"
    assert chat(base, key, model="qwen-flash").status_code == 403  # not in its models

    listed = admin(base, "GET", "/admin/keys")
    assert listed.status_code == 200
    row = next(k for k in listed.json()["keys"] if k["name"] == "search")
    assert row["budgets"] == [{"name": "search-0", "limit": "5 CNY", "per": "day",
                               "mode": "hard"}]
    assert (row["user"], row["team"], row["rpm"], row["revoked"]) == ("alice", "search", 100,
                                                                       False)
    def spent() -> tuple[object, Decimal]:
        tenant = app.tenants.by_name["search"]
        budget = tenant.key_budgets[0][0]
        return tenant, budget.status("key=search").committed

    settled(url, 1)
    before, spent_before = spent()
    assert spent_before > 0
    changed = admin(base, "PATCH", "/admin/keys/search", {"models": None, "rpm": 2})
    after, spent_after = spent()
    assert after is not before and spent_after == spent_before  # rebuilt, spend kept
    assert changed.status_code == 200, changed.text
    assert changed.json()["models"] is None and changed.json()["rpm"] == 2
    assert chat(base, key, model="qwen-flash").status_code == 200  # the change is live
    assert chat(base, key, "over the rpm").status_code == 429  # rpm 2 (the window kept 1)

    revoked = admin(base, "DELETE", "/admin/keys/search")
    assert revoked.status_code == 200 and revoked.json()["revoked"] is True
    refused = chat(base, key)
    assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"
    assert admin(base, "GET", "/admin/keys/search").json()["revoked"] is True
    assert "search" not in [k["name"] for k in
                            admin(base, "GET", "/admin/keys?revoked=false").json()["keys"]]
    chinese = admin(base, "POST", "/admin/keys", {"name": "搜索组", "tags": ["项目=翻译"]})
    assert chinese.status_code == 201
    assert admin(base, "GET", "/admin/keys/搜索组").json()["tags"] == ["项目=翻译"]
    assert chat(base, chinese.json()["key"], "你好").status_code == 200
    assert admin(base, "GET", "/admin/keys/nobody").status_code == 404

    # The records say who called: key, user and team.
    records = [r for r in settled(url, 3) if "key=search" in r.tags]
    assert len(records) == 2
    assert all({"key=search", "team=search", "project=x"} <= set(r.tags) for r in records)
    assert {r.user for r in records} == {"alice"}
    # the secret is in the 201 answer and nowhere else
    everything = "".join(admin(base, "GET", p).text for p in
                         ("/admin/keys", "/admin/keys/search", "/admin/spend?by=key"))
    assert key not in everything and "sha256:" not in everything
    assert key not in caplog.text and key[6:] not in caplog.text


def test_bad_fields_are_400_naming_them(gateway):
    base, _, _ = gateway
    cases = [({"name": "a", "budget": "5 XYZ/day"}, "budget.limit"),
             ({"name": "a", "budget": "5 CNY/fortnight"}, "budget.per"),
             ({"name": "a", "budget": ["5 CNY/day", "nope"]}, "budget[1].limit"),
             ({"name": "a", "rpm": 0}, "rpm"), ({"name": "a", "rpm": "10"}, "rpm"),
             ({"name": "a", "models": "qwen-plus"}, "models"),
             ({"name": "a", "colour": "red"}, "colour"), ({"name": "a b"}, "name"),
             ({}, "name"), ({"name": "a", "tags": ["key=b"]}, "tags"),
             ({"name": "a", "upstream": "elsewhere"}, "upstream"),
             ({"name": "a", "headers": ["not a header"]}, "headers")]
    for body, field in cases:
        answer = admin(base, "POST", "/admin/keys", body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"]["param"] == field, (body, answer.json())
    raw = httpx.post(f"{base}/admin/keys", content=b"{not json",
                     headers={"Authorization": f"Bearer {TOKEN}"})
    assert raw.status_code == 400 and "JSON" in raw.json()["error"]["message"]
    assert admin(base, "GET", "/admin/spend?by=colour").json()["error"]["param"] == "by"
    assert admin(base, "GET", "/admin/spend?since=yesterday").json()["error"]["param"] == \
        "since"
    assert admin(base, "GET", "/admin/spend?tz=Mars/Base").json()["error"]["param"] == "tz"
    put = admin(base, "PUT", "/admin/budgets/user/alice/daily", {"limit": "-1 CNY"})
    assert put.status_code == 400 and put.json()["error"]["param"] == "limit"


def test_admin_token_required(gateway):
    base, _, _ = gateway
    for token in (None, "wrong", TOKEN + "x", TOKEN[:-1]):
        for method, path, _ in ROUTES:
            concrete = path.format(name="k", scope="user", subject="a")
            answer = admin(base, method, concrete, {} if method != "GET" else None,
                           token=token)
            assert answer.status_code == 401, (method, concrete, token)
            assert answer.json()["error"]["type"] == "authentication_error"
    basic = httpx.get(f"{base}/admin/keys", headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status_code == 401
    assert admin(base, "GET", "/admin/nothing").status_code == 404
    assert admin(base, "PUT", "/admin/keys").status_code == 405


def test_no_admin_api_without_a_token_env(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("QM_TEST_REAL_KEY", REAL)
    config = parse_config({"ledger": f"sqlite:///{tmp_path / 'l.db'}", "upstreams": {
        "default": {"url": fake.url, "api_key_env": "QM_TEST_REAL_KEY"}}})
    with running_gateway(create_app(config)) as base:
        for token in (None, TOKEN):
            answer = admin(base, "GET", "/admin/keys", token=token)
            assert answer.status_code == 404
            assert answer.json()["error"]["type"] == "not_found"


def test_config_fields_checked():
    upstream = {"default": {"url": "http://127.0.0.1:1", "api_key_env": "X"}}
    with pytest.raises(GatewayConfigError, match="ledger"):
        parse_config({"ledger": "mysql://db/x", "upstreams": upstream})
    with pytest.raises(GatewayConfigError, match=r"ledger: must be ") as bad:
        parse_config({"ledger": "mongodb://u:secret@db/x", "upstreams": upstream})
    assert "secret" not in str(bad.value) and "u:***@db" in str(bad.value)
    with pytest.raises(GatewayConfigError) as no_ledger:
        parse_config({"admin_token_env": "TOKEN", "upstreams": upstream})
    assert no_ledger.value.field == "admin_token_env"
    with pytest.raises(GatewayConfigError) as bad_name:
        parse_config({"ledger": "sqlite:///x.db", "admin_token_env": "MY TOKEN",
                      "upstreams": upstream})
    assert bad_name.value.field == "admin_token_env"
    with pytest.raises(GatewayConfigError) as no_real_key:
        parse_config({"ledger": "sqlite:///x.db"})
    assert no_real_key.value.field == "upstreams.default"


def test_missing_token_variable_fails_the_start(fake, tmp_path, monkeypatch):
    monkeypatch.setenv("QM_TEST_REAL_KEY", REAL)
    monkeypatch.delenv("QM_TEST_ADMIN_TOKEN", raising=False)
    with pytest.raises(GatewayConfigError) as failed:
        create_app(fleet_config(fake, f"sqlite:///{tmp_path / 'l.db'}"))
    assert failed.value.field == "admin_token_env"


def test_user_and_team_budgets_enforced(gateway, fake):
    base, url, _ = gateway
    body = {"model": "qwen-plus", "max_tokens": 20,
            "messages": [{"role": "user", "content": "budget"}]}
    high = qm.estimate_cost(body, "qwen-plus").high.amount
    keys = {}
    for name, user, team in (("a1", "ann", "red"), ("a2", "ann", "blue"),
                             ("b1", "bob", "red")):
        made = admin(base, "POST", "/admin/keys", {"name": name, "user": user, "team": team})
        keys[name] = made.json()["key"]
    # ann may spend 2.5 calls' worth a day whichever key she uses; team red 4.5 calls' worth.
    user_limit = (high * Decimal("2.5")).quantize(Decimal("0.0000001"))
    team_limit = (high * Decimal("4.5")).quantize(Decimal("0.0000001"))
    put = admin(base, "PUT", "/admin/budgets/user/ann/daily", {"budget":
                                                               f"{user_limit} CNY/day"})
    assert put.status_code == 200, put.text
    assert put.json()["scope"] == "user" and put.json()["committed"] == "0"
    assert admin(base, "PUT", "/admin/budgets/team/red/daily",
                 {"limit": f"{team_limit} CNY", "per": "day"}).status_code == 200

    def call(name):
        return httpx.post(f"{base}{CHAT}", json=body, timeout=30,
                          headers={"Authorization": f"Bearer {keys[name]}"}).status_code

    def until_refused(names):
        codes = []
        for n in range(12):
            codes.append((names[n % len(names)], call(names[n % len(names)])))
            if codes[-1][1] != 200:
                return codes
        raise AssertionError(f"never refused: {codes}")

    ann = until_refused(["a1", "a2"])
    assert ann[-1][1] == 403 and {"a1", "a2"} <= {n for n, s in ann if s == 200}
    bob = until_refused(["b1"])
    assert bob[-1][1] == 403
    records = settled(url, len([c for c in ann + bob if c[1] == 200]))
    for scope, subject, limit, belongs in (
            ("user", "ann", user_limit, lambda r: r.user == "ann"),
            ("team", "red", team_limit, lambda r: "team=red" in r.tags)):
        row = admin(base, "GET", f"/admin/budgets/{scope}/{subject}/daily").json()
        spent = sum(Decimal(r.cost) for r in records if belongs(r))
        assert Decimal(row["committed"]) == spent <= limit
        assert row["reserved"] == "0"
    listed = admin(base, "GET", "/admin/budgets/user/ann").json()["budgets"]
    assert len(listed) == 1 and Decimal(listed[0]["committed"]) > 0
    assert Decimal(listed[0]["committed"]) <= user_limit
    assert admin(base, "DELETE", "/admin/budgets/user/ann/daily").status_code == 200
    assert call("a2") == 200  # the user budget is gone; team blue has none
    assert admin(base, "GET", "/admin/budgets/user/ann/daily").status_code == 404
    assert admin(base, "GET", "/admin/budgets/planet/x").status_code == 404


def test_spend_equals_the_records(gateway, fake):
    base, url, _ = gateway
    keys = {}
    for name, user in (("s1", "u1"), ("s2", "u2")):
        keys[name] = admin(base, "POST", "/admin/keys", {"name": name, "user": user}).json()
    for n in range(3):
        assert chat(base, keys["s1"]["key"], f"one {n}").status_code == 200
    assert chat(base, keys["s2"]["key"], "two", model="qwen-flash").status_code == 200
    records = settled(url, 4)
    for by, group in (("key", lambda r: next(t[4:] for t in r.tags if t.startswith("key="))),
                      ("user", lambda r: r.user), ("model", lambda r: r.model)):
        answer = admin(base, "GET", f"/admin/spend?by={by}")
        assert answer.status_code == 200
        rows = answer.json()["rows"]
        assert all(re.fullmatch(r"\d+\.\d+|0", r["cost"]) for r in rows)  # no float, no 1E-7
        got = {(r[by], r["currency"]): (Decimal(r["cost"]), r["calls"]) for r in rows}
        want: dict = {}
        for r in records:
            k = (group(r), r.currency)
            cost, calls = want.get(k, (Decimal(0), 0))
            want[k] = (cost + Decimal(r.cost), calls + 1)
        assert got == want
    day = admin(base, "GET", "/admin/spend?by=day&tz=Asia/Shanghai").json()
    assert day["tz"] == "Asia/Shanghai" and sum(r["calls"] for r in day["rows"]) == 4
    future = admin(base, "GET", "/admin/spend?since=2999-01-01").json()
    assert future["rows"] == []


def test_openapi_document_matches_the_routes(gateway):
    base, _, _ = gateway
    served = admin(base, "GET", "/admin/openapi.json")
    assert served.status_code == 200
    doc = served.json()
    assert doc == json.loads(json.dumps(document()))
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(m, p) for m, p, _ in ROUTES}
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(doc)  # the OpenAPI 3.1 schema (raises on any mistake)


def test_key_added_by_another_process_is_live(gateway):
    """A key written to the ledger by anyone (here: this test, another connection) works
    (the delay is measured in benchmarks/bench_fleet_keys.py); revoked the same way, it stops."""
    base, url, _ = gateway
    from qwen_meter.gateway.admin_fields import new_entry

    secret, entry = new_entry({"name": "outside"}, {"default": None})
    with open_ledger(url) as ledger:
        ledger.create_key(entry)
        assert eventually(lambda: chat(base, secret).status_code == 200)
        ledger.revoke_key("outside")
        assert eventually(lambda: chat(base, secret).status_code == 401)


def settled(url, count):
    """The ledger's settled records, once there are ``count`` (a call settles just after its
    answer went out)."""
    deadline = time.monotonic() + 30
    while True:
        with open_ledger(url) as ledger:
            records = [r for r in ledger if r.status not in ("pending", "refused")]
        if len(records) >= count or time.monotonic() > deadline:
            assert len(records) == count
            return records
        time.sleep(0.05)
