"""The gateway's alerts: uvicorn serving the gateway in front of the DashScope stand-in, webhook
receivers on 127.0.0.1 recording every POST. A budget crossing 80 % sends one DingTalk-format
and one Slack-format message, 100 % its own, the next period again; a hanging receiver holds up
no call; two gateway processes on one shared store send one alert, not two; error-rate and
limiter alerts fire."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from decimal import Decimal

import httpx
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from gateway_server import gateway_process, running_gateway
from webhook_receiver import Receiver

from qwen_meter.billing.pricing import cost
from qwen_meter.gateway import create_app
from qwen_meter.gateway.config import parse_config
from qwen_meter.gateway.keys import hash_key, new_key
from qwen_meter.testing.dashscope import FakeDashScope

REAL_KEY = "sk-REALupstreamKEY0123456789abcdef"
SECRET = "SECgatewayTest42"
KEY = new_key()
OTHER = new_key()
MESSAGES = [{"role": "user", "content": "hi"}]


def usage(tokens: int) -> dict:
    return {"usage": {"prompt_tokens": tokens, "completion_tokens": 0, "total_tokens": tokens}}


C = cost(usage(1000)["usage"], "qwen-plus").amount
assert C is not None


@pytest.fixture(scope="module")
def fake():
    server = FakeDashScope()
    yield server
    server.close()


@pytest.fixture
def hooks():
    made = {"ding": Receiver(), "slack": Receiver(default=(200, "ok")), "json": Receiver()}
    yield made
    for receiver in made.values():
        receiver.close()


@pytest.fixture(autouse=True)
def environment(monkeypatch, hooks):
    monkeypatch.setenv("QM_T_REAL_KEY", REAL_KEY)
    monkeypatch.setenv("QM_T_DINGTALK", hooks["ding"].url)
    monkeypatch.setenv("QM_T_DINGTALK_SECRET", SECRET)


def channels(hooks: dict, **json_channel) -> list[dict]:
    out = [{"name": "ops-dingtalk", "format": "dingtalk", "url_env": "QM_T_DINGTALK",
            "secret_env": "QM_T_DINGTALK_SECRET", "lang": "zh", "on": ["budget"],
            "thresholds": [80, 100]},
           {"name": "slack", "format": "slack", "url": hooks["slack"].url, "lang": "en",
            "on": ["budget"], "thresholds": [80, 100]}]
    if json_channel:
        out.append({"name": "json", "format": "json", "url": hooks["json"].url,
                    **json_channel})
    return out


def config_for(fake, hooks, *, limit: Decimal, rules: dict | None = None, rpm: int | None = None,
               json_channel: dict | None = None, store: str = "memory://") -> dict:
    key = {"name": "search", "hash": hash_key(KEY), "user": "search",
           "budgets": [{"name": "daily", "limit": f"{limit} CNY", "per": "day"}]}
    if rpm:
        key["rpm"] = rpm
    return {"store": store,
            "upstreams": {"default": {"url": fake.url, "api_key_env": "QM_T_REAL_KEY"}},
            "keys": [key, {"name": "other", "hash": hash_key(OTHER)}],
            "alerts": {"channels": channels(hooks, **(json_channel or {})),
                       "rules": rules or {}, "backoff": 0.01}}


def chat(url: str, fake, tokens: int | None = 1000, *, key: str = KEY, status: int | None = None
         ) -> httpx.Response:
    if status is not None:
        fake.push({"status": status, "code": "InternalError", "message": "boom"})
    elif tokens is not None:
        fake.push(usage(tokens))
    return httpx.post(f"{url}/compatible-mode/v1/chat/completions", timeout=30,
                      headers={"Authorization": f"Bearer {key}"},
                      json={"model": "qwen-plus", "messages": MESSAGES, "max_tokens": 1})


def settled(app, n: int, key: str = "search", status: str = "ok") -> None:
    """Wait until the gateway counted ``n`` calls (alerts observe before metrics do, so by
    then the alert checks are queued), then until the alert sender is idle."""
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (app.metrics.sample("qwen_meter_gateway_calls_total", endpoint="chat", key=key,
                               model="qwen-plus", status=status) or 0) >= n:
            break
        time.sleep(0.01)
    assert app.alerts.flush(30)


def sign_ok(post) -> bool:
    stamp = post.query["timestamp"]
    mac = hmac.new(SECRET.encode(), f"{stamp}\n{SECRET}".encode(), hashlib.sha256).digest()
    return post.query["sign"] == base64.b64encode(mac).decode()


def test_budget_80_then_100_then_next_period(fake, hooks, tmp_path):
    ding, slack = hooks["ding"], hooks["slack"]
    app = create_app(parse_config(config_for(fake, hooks, limit=C * 10), "gw.yaml"),
                     log_path=str(tmp_path / "u.jsonl"))
    with running_gateway(app) as url:
        for n in range(1, 8):
            assert chat(url, fake).status_code == 200
            settled(app, n)
        assert ding.posts == [] and slack.posts == []  # 70 %: below every threshold
        assert chat(url, fake).status_code == 200  # the 8th: 80 %
        settled(app, 8)
        assert len(ding.posts) == 1 and len(slack.posts) == 1
        body = ding.posts[0].json
        assert body["msgtype"] == "markdown"
        assert body["markdown"]["title"] == "预算 daily（密钥 search）已用 80 %"
        assert f"¥{C * 8:.4f}".rstrip("0") in body["markdown"]["text"]  # spent, in yuan
        assert sign_ok(ding.posts[0]) and ding.posts[0].query["access_token"] == "t0k"
        sent = slack.posts[0].json
        assert sent["text"] == "Budget daily (key search) reached 80 %"
        assert [b["type"] for b in sent["blocks"]] == ["header", "section", "context"]
        budget = app.tenants.by_name["search"].meter.budgets[0]
        period = budget.status("search").period
        assert f"`budget:key=search:daily:{period}:80`" in \
            sent["blocks"][2]["elements"][0]["text"]
        # The 9th call goes past its estimate (2000 tokens): 100 %, its own alert.
        assert chat(url, fake, 2000).status_code == 200
        settled(app, 9)
        assert [p.json["text"] for p in slack.posts] == [
            "Budget daily (key search) reached 80 %", "Budget daily (key search) reached 100 %"]
        assert len(ding.posts) == 2 and all(sign_ok(p) for p in ding.posts)
        # A hard budget used up: refused now, no more alerts.
        assert chat(url, fake, None).status_code == 403
        # The next day: a new period, the same thresholds alert again.
        budget.clock = lambda: __import__("time").time() + 86_400
        for n in range(10, 18):
            assert chat(url, fake).status_code == 200
            settled(app, n)
        assert len(ding.posts) == 3 and len(slack.posts) == 3
        assert budget.status("search").period != period
        assert ding.posts[2].json["markdown"]["title"].endswith("已用 80 %")


def test_a_hanging_receiver_holds_up_no_call(fake, hooks, tmp_path):
    ding = hooks["ding"]
    ding.hang = threading.Event()
    config = config_for(fake, hooks, limit=C * Decimal("1.2"))
    app = create_app(parse_config(config, "gw.yaml"), log_path=str(tmp_path / "u.jsonl"))
    with running_gateway(app) as url:
        assert chat(url, fake).status_code == 200  # 83 %: DingTalk's POST hangs from now
        assert ding.entered.wait(30)
        answers = [chat(url, fake, 1, key=OTHER) for _ in range(3)]
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert ding.answered == 0 and not ding.hang.is_set()  # still holding the alert
        assert len(hooks["slack"].wait(1)) == 1  # the other channel was not held up either
        ding.hang.set()
        assert app.alerts.flush(30)
    assert ding.answered == 1


def test_error_rate_and_limiter_alerts(fake, hooks, tmp_path):
    receiver = hooks["json"]
    config = config_for(fake, hooks, limit=C * 1000, rpm=5,
                        rules={"limiter_percent": 80, "error_percent": 50,
                               "error_min_calls": 4, "error_calls": 10},
                        json_channel={"on": ["limiter", "errors"]})
    app = create_app(parse_config(config, "gw.yaml"), log_path=str(tmp_path / "u.jsonl"))
    with running_gateway(app) as url:
        # Upstream errors (on the key without a limit): 2 of 4 calls fail — 50 %. The first
        # failure is 1 of 2, but too few calls to judge.
        assert chat(url, fake, 1, key=OTHER).status_code == 200
        assert chat(url, fake, status=500, key=OTHER).status_code == 500
        assert chat(url, fake, 1, key=OTHER).status_code == 200
        assert chat(url, fake, status=503, key=OTHER).status_code == 503
        errors = receiver.wait(1, where=lambda p: p.json["kind"] == "errors")
        assert len(errors) == 1
        assert (errors[0].json["errors"]["failures"], errors[0].json["errors"]["calls"]) == (2, 4)
        assert errors[0].json["title"].startswith("Upstream error rate 50 %")
        # The limiter: 4 of the key's 5 RPM is 80 %.
        for n in range(1, 4):
            assert chat(url, fake).status_code == 200
            settled(app, n)
        assert [p.json["kind"] for p in receiver.posts] == ["errors"]
        assert chat(url, fake).status_code == 200
        settled(app, 4)
        limiter = [p.json["limiter"] for p in receiver.posts if p.json["kind"] == "limiter"]
        assert [(x["key"], x["window"], x["used"], x["limit"]) for x in limiter] == \
            [("search", "rpm", 4, 5)]
        assert receiver.posts[-1].json["source"] == app.tenants.replica
        assert chat(url, fake).status_code == 200
        assert chat(url, fake, None).status_code == 429  # the 6th: refused by the limiter
        refused = receiver.wait(1, where=lambda p: p.json.get("limiter", {}).get("window")
                                == "refused")
        assert len(refused) == 1 and refused[0].json["title"] == \
            "Rate limiter refused calls of search"
        assert app.alerts.flush(30)
        assert len(receiver.posts) == 3


def test_two_gateway_processes_send_one_alert(fake, hooks, tmp_path):
    """Both replicas check the shared budget after every call; the shared claim lets one of
    them send each alert."""
    ding, receiver = hooks["ding"], hooks["json"]
    config = config_for(fake, hooks, limit=C * 10, store=f"sqlite:///{tmp_path / 'store.db'}",
                        json_channel={"on": ["budget"], "thresholds": [90]},
                        rules={"error_percent": 10, "error_min_calls": 1})
    config["alerts"]["channels"][0]["on"] = ["budget", "errors"]
    path = tmp_path / "gw.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = {"QM_T_REAL_KEY": REAL_KEY, "QM_T_DINGTALK": ding.url,
           "QM_T_DINGTALK_SECRET": SECRET}
    with gateway_process("--config", str(path), "--log", str(tmp_path / "a.jsonl"),
                         env=env) as (a, _), \
            gateway_process("--config", str(path), "--log", str(tmp_path / "b.jsonl"),
                            env=env) as (b, _):
        for n in range(8):  # alternately; the 8th (on b) reaches 80 %
            assert chat((a, b)[n % 2], fake).status_code == 200
        assert len(ding.wait(1)) == 1
        # a sees 90 % next. Its 90 % alert (the JSON channel's) shows it checked the budget
        # and decided on the 80 % alert too (in the same pass) ...
        assert chat(a, fake).status_code == 200
        assert len(receiver.wait(1)) == 1
        # ... and an error-rate alert from a, queued after that pass, reaching DingTalk shows
        # that a's DingTalk lane sent everything it had before it.
        assert chat(a, fake, status=500, key=OTHER).status_code == 500
        ding.wait(1, where=lambda p: "上游错误率" in p.json["markdown"]["title"])
    titles = [p.json["markdown"]["title"] for p in ding.posts]
    assert titles[0] == "预算 daily（密钥 search）已用 80 %"
    assert titles[1].startswith("上游错误率") and len(titles) == 2
    assert [p.json["text"] for p in hooks["slack"].posts] == [
        "Budget daily (key search) reached 80 %"]


def test_two_gateway_processes_on_one_ledger_send_one_alert(fake, hooks, tmp_path, ledger_url):
    """The fleet's way: both replicas on one ledger (SQLite file or PostgreSQL); the marks are
    claimed in the ledger's alert_marks."""
    from ledger_fixtures import rows

    ding = hooks["ding"]
    config = config_for(fake, hooks, limit=C * 10, store=f"sqlite:///{tmp_path / 'store.db'}",
                        json_channel={"on": ["budget"], "thresholds": [90]},
                        rules={"error_percent": 10, "error_min_calls": 1})
    config["ledger"] = ledger_url
    config["alerts"]["channels"][0]["on"] = ["budget", "errors"]
    path = tmp_path / "gw.yaml"
    path.write_text(json.dumps(config), encoding="utf-8")
    env = {"QM_T_REAL_KEY": REAL_KEY, "QM_T_DINGTALK": ding.url,
           "QM_T_DINGTALK_SECRET": SECRET}
    with gateway_process("--config", str(path), env=env) as (a, _), \
            gateway_process("--config", str(path), env=env) as (b, _):
        for n in range(8):
            assert chat((a, b)[n % 2], fake).status_code == 200
        assert len(ding.wait(1)) == 1
        assert chat(a, fake).status_code == 200
        assert len(hooks["json"].wait(1)) == 1
        assert chat(a, fake, status=500, key=OTHER).status_code == 500
        ding.wait(1, where=lambda p: "上游错误率" in p.json["markdown"]["title"])
    titles = [p.json["markdown"]["title"] for p in ding.posts]
    assert titles[0] == "预算 daily（密钥 search）已用 80 %" and len(titles) == 2
    marks = {m for (m,) in rows(ledger_url, "SELECT mark FROM alert_marks")}
    assert any(m.startswith("budget:key=search:daily:") and m.endswith(":80") for m in marks)
