"""The words and headers of the gateway's own refusals, through a real gateway on uvicorn: a
budget's 403 names its subject once (``team=search``, ``key=k2``, ``user=alice``), and the
503 of a store that fails says in ``Retry-After`` when trying again makes sense (the config's
``store_retry_after``, or the rest of the store's circuit-breaker cool-down)."""

from __future__ import annotations

import socket

import httpx
import pytest

pytest.importorskip("uvicorn")

from gateway_server import running_gateway
from test_gateway_admin import CHAT, REAL, TOKEN, admin, chat, fake, fleet_config  # noqa: F401

import qwen_meter as qm
from qwen_meter.gateway import create_app
from qwen_meter.gateway.config import GatewayConfigError, parse_config
from qwen_meter.limits.store import CircuitBreaker

BODY = {"model": "qwen-plus", "max_tokens": 20, "messages": [{"role": "user", "content": "hello"}]}


def refused(name: str, subject: str, key: str) -> dict:
    """The 403 body the gateway gives when budget ``name`` of ``subject`` cannot hold a call
    (the budgets here have no period: ``all``)."""
    high = qm.estimate_cost(BODY, "qwen-plus").high.amount
    return {"error": {
        "message": f"Budget exceeded: budget {name!r} ({subject}, all): {high} CNY does not "
                   f"fit; committed 0, reserved 0, limit 0.000001 CNY (gateway key {key!r})",
        "type": "budget_exceeded", "param": None, "code": "budget_exceeded"}}


def test_a_budgets_403_names_its_subject_once(fake, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("QM_TEST_ADMIN_TOKEN", TOKEN)
    monkeypatch.setenv("QM_TEST_REAL_KEY", REAL)
    app = create_app(fleet_config(fake, f"sqlite:///{tmp_path / 'ledger.db'}"))
    tiny = {"limit": "0.000001 CNY"}
    with running_gateway(app) as base:
        assert admin(base, "PUT", "/admin/budgets/team/search/cap", tiny).status_code == 200
        assert admin(base, "PUT", "/admin/budgets/user/alice/mine", tiny).status_code == 200
        made = {name: admin(base, "POST", "/admin/keys", body).json()["key"] for name, body in (
            ("k1", {"name": "k1", "team": "search"}),
            ("k2", {"name": "k2", "budget": "0.000001 CNY"}),
            ("k3", {"name": "k3", "user": "alice"}))}
        sent = len(fake.requests)
        answers = {name: chat(base, key) for name, key in made.items()}
    assert {name: a.status_code for name, a in answers.items()} == {"k1": 403, "k2": 403,
                                                                     "k3": 403}
    assert answers["k1"].json() == refused("cap", "team=search", "k1")
    assert answers["k2"].json() == refused("k2-0", "key=k2", "k2")
    assert answers["k3"].json() == refused("mine", "user=alice", "k3")
    assert len(fake.requests) == sent  # nothing went upstream


def test_the_library_names_a_budgets_subject_once() -> None:
    """The same words from a Budget used directly: a tag scope keyed by the whole tag (as the
    meter does) or by its value alone, a user, the global budget."""
    for scope, key, subject in (("team", "team=search", "team=search"),
                                ("team", "search", "team=search"),
                                ("user", "alice", "user=alice"), ("global", None, "global")):
        budget = qm.Budget("0.000001 CNY", scope=scope, name="cap")
        with pytest.raises(qm.BudgetExceeded) as caught:
            budget.reserve("1 CNY", key=key)
        assert str(caught.value).startswith(f"budget 'cap' ({subject}, all): 1 CNY does not"), \
            str(caught.value)


def down_store_gateway(fake, tmp_path, **extra):  # noqa: F811
    """A gateway whose Redis store refuses every connection (a port nothing listens on)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = parse_config({"store": f"redis://127.0.0.1:{port}/0", "store_timeout": 0.5,
                           "upstreams": {"default": {"url": fake.url}},
                           "budgets": [{"name": "all", "limit": "5 CNY", "per": "day"}],
                           **extra})
    return create_app(config, log_path=str(tmp_path / "usage.jsonl"))


def test_a_failing_store_says_when_to_retry(fake, tmp_path):  # noqa: F811
    """Before the store's breaker opens, Retry-After is the config's ``store_retry_after``;
    once it opens, the rest of its cool-down (no call can be checked before then), read off
    the breaker's clock, rounded up to whole seconds."""
    pytest.importorskip("redis")
    app = down_store_gateway(fake, tmp_path, store_retry_after=3)
    now = [1000.0]
    app.tenants.store.breaker = CircuitBreaker(failures=2, cooldown=30, clock=lambda: now[0])
    sent = len(fake.requests)
    with running_gateway(app) as base:
        first = httpx.post(f"{base}{CHAT}", json=BODY, timeout=30)
        second = httpx.post(f"{base}{CHAT}", json=BODY, timeout=30)  # this failure opens it
        third = httpx.post(f"{base}{CHAT}", json=BODY, timeout=30)
        now[0] += 12.5
        later = httpx.post(f"{base}{CHAT}", json=BODY, timeout=30)
        now[0] += 17.1  # 0.4 s of the cool-down left: the config's 3 s is the longer wait
        last = httpx.post(f"{base}{CHAT}", json=BODY, timeout=30)
    answers = [first, second, third, later, last]
    assert [a.status_code for a in answers] == [503] * 5
    assert [a.headers["retry-after"] for a in answers] == ["3", "30", "30", "18", "3"]
    assert answers[2].json()["error"] == {
        "message": "The gateway's limit store is unavailable; try again in 30 s.",
        "type": "service_unavailable", "param": None, "code": "service_unavailable"}
    assert len(fake.requests) == sent


def test_store_retry_after_defaults_to_a_second_and_is_checked(fake, tmp_path):  # noqa: F811
    pytest.importorskip("redis")
    app = down_store_gateway(fake, tmp_path)
    with running_gateway(app) as base:
        answer = httpx.post(f"{base}{CHAT}", json=BODY, timeout=30)
    assert answer.status_code == 503 and answer.headers["retry-after"] == "1"
    assert parse_config({"store_retry_after": 2.5}).store_retry_after == 2.5
    for bad in (0, -1, "soon", True):
        with pytest.raises(GatewayConfigError, match="store_retry_after"):
            parse_config({"store_retry_after": bad})
