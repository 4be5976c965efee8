"""Alerts from a Meter (the library, no gateway) to real webhook receivers on 127.0.0.1:
budget thresholds once per threshold and period, retries, giving up, 200-with-errcode bodies,
a hanging receiver that holds up nothing, error-rate and limiter alerts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import threading
import time
from decimal import Decimal

import pytest
from webhook_receiver import Receiver

from qwen_meter.alerts import (
    Alert,
    AlertDeliveryWarning,
    AlertObserver,
    AlertRules,
    AlertSender,
    Channel,
    MemoryClaims,
    StoreClaims,
)
from qwen_meter.base.errors import RateLimited
from qwen_meter.billing.pricing import cost
from qwen_meter.limits.budget.core import Budget
from qwen_meter.limits.limiter.core import RateLimiter
from qwen_meter.limits.limiter.values import RateLimit
from qwen_meter.limits.store import open_store
from qwen_meter.meter.pipeline import Meter
from qwen_meter.meter.server_errors import ServerUnavailable

HELLO = [{"role": "user", "content": "hi"}]
USAGE = {"prompt_tokens": 1000, "completion_tokens": 0}
SECRET = "SECtest0123"


@pytest.fixture
def receivers():
    made: list[Receiver] = []

    def make(**kwargs) -> Receiver:
        made.append(Receiver(**kwargs))
        return made[-1]

    yield make
    for receiver in made:
        receiver.close()


def one_call_cost() -> Decimal:
    amount = cost(USAGE, "qwen-plus").amount
    assert amount is not None and amount > 0
    return amount


def metered(meter: Meter, n: int = 1) -> None:
    for _ in range(n):
        call = meter.begin({"model": "qwen-plus", "messages": HELLO, "max_tokens": 1})
        call.finish(dict(USAGE))


def dingtalk_sign_ok(post) -> bool:
    stamp = post.query["timestamp"]
    expected = base64.b64encode(hmac.new(SECRET.encode(), f"{stamp}\n{SECRET}".encode(),
                                         hashlib.sha256).digest()).decode()
    return post.query.get("sign") == expected


def test_budget_thresholds_once_each_then_again_next_period(receivers, tmp_path):
    ding, slack = receivers(), receivers(default=(200, "ok"))
    clock = [time.time()]
    budget = Budget(one_call_cost() * 10, "CNY", per="day", name="daily",
                    clock=lambda: clock[0])
    alerts = AlertObserver([
        Channel("ops", "dingtalk", ding.url, secret=SECRET, lang="zh"),
        Channel("slack", "slack", slack.url, thresholds=(80.0, 100.0))], backoff=0.01)
    meter = Meter(budget=budget, log=str(tmp_path / "u.jsonl"), observers=[alerts],
                  calibrate=False)  # the pushed usage is not what "hi" would cost
    seen = []
    for _ in range(10):
        metered(meter)
        assert alerts.flush(30)
        seen.append((len(ding.posts), len(slack.posts)))
    # 50 % after the 5th call (DingTalk only: Slack wants 80 and 100), 80 % after the 8th,
    # 100 % after the 10th; nothing repeats while spend stays past a threshold.
    assert seen == [(0, 0)] * 4 + [(1, 0)] * 3 + [(2, 1)] * 2 + [(3, 2)]
    titles = [p.json["markdown"]["title"] for p in ding.posts]
    assert titles == ["预算 daily（全局）已用 50 %", "预算 daily（全局）已用 80 %",
                      "预算 daily（全局）已用 100 %"]
    assert all(dingtalk_sign_ok(p) for p in ding.posts)
    assert [p.json["text"] for p in slack.posts] == ["Budget daily (global) reached 80 %",
                                                      "Budget daily (global) reached 100 %"]
    # The next day is a new period: the same thresholds alert again.
    clock[0] += 86_400
    for _ in range(8):
        metered(meter)
        assert alerts.flush(30)
    assert len(ding.posts) == 5 and len(slack.posts) == 3
    assert slack.posts[-1].json["blocks"][2]["elements"][0]["text"].endswith(
        f":{budget.status().period}:80`")
    alerts.close()


def test_a_jump_past_two_thresholds_sends_the_highest_each_channel_wants(receivers, tmp_path):
    low, both = receivers(), receivers()
    budget = Budget(one_call_cost() * 10, "CNY", name="b")
    alerts = AlertObserver([Channel("low", "json", low.url, thresholds=(50.0,)),
                            Channel("both", "json", both.url)])
    meter = Meter(budget=budget, log=None, observers=[alerts])
    call = meter.begin({"model": "qwen-plus", "messages": HELLO, "max_tokens": 1})
    call.finish({"prompt_tokens": 8500, "completion_tokens": 0})  # 0 % -> 85 %
    assert alerts.flush(30)
    assert [p.json["budget"]["threshold"] for p in low.posts] == [50.0]
    assert [p.json["budget"]["threshold"] for p in both.posts] == [80.0]
    alerts.close()


def test_a_receiver_failing_twice_then_answering_gets_the_alert(receivers):
    hook = receivers(script=[(500, "oops", {}), (503, "busy", {"Retry-After": "0"})])
    sender = AlertSender([Channel("h", "dingtalk", hook.url)], backoff=0.01)
    sender.send([Alert("errors", "errors:test:1", "critical", _error_facts())])
    assert sender.flush(30)
    assert len(hook.posts) == 3  # the same alert, three times: two failures, then delivered
    assert len({p.raw for p in hook.posts}) == 1
    assert [o.result for o in sender.history] == ["retrying", "retrying", "delivered"]
    sender.close()


def test_giving_up_warns_and_errcode_bodies_are_failures(receivers):
    down = receivers(default=(502, "bad gateway"))
    bad_sign = receivers(default=(200, {"errcode": 310000, "errmsg": "sign not match"}))
    sender = AlertSender([Channel("down", "slack", down.url),
                          Channel("sign", "dingtalk", bad_sign.url)], tries=3, backoff=0.01)
    with pytest.warns(AlertDeliveryWarning) as caught:
        sender.send([Alert("errors", "errors:test:2", "critical", _error_facts())])
        assert sender.flush(30)
    messages = sorted(str(w.message) for w in caught)
    assert len(down.posts) == 3  # retried: a 5xx may pass
    assert len(bad_sign.posts) == 1  # not retried: a wrong signature stays wrong
    assert "after 3 tries: HTTP 502" in messages[0]
    assert "after 1 try: HTTP 200 with error code 310000" in messages[1]
    assert sender.stats["delivered"] == 0 and sender.stats["gave_up"] == 2
    sender.close()


def test_a_robot_saying_too_fast_is_retried(receivers):
    hook = receivers(script=[(200, {"errcode": 130101, "errmsg": "send too fast"}, {})])
    sender = AlertSender([Channel("d", "dingtalk", hook.url)], backoff=0.01)
    sender.send([Alert("errors", "errors:test:3", "critical", _error_facts())])
    assert sender.flush(30)
    assert len(hook.posts) == 2 and sender.stats["delivered"] == 1
    sender.close()


def test_a_hanging_receiver_holds_up_no_call_and_the_queue_is_bounded(receivers, tmp_path):
    hook = receivers()
    hook.hang = threading.Event()
    budget = Budget(one_call_cost() * 2, "CNY", name="tiny", mode="soft")
    alerts = AlertObserver([Channel("h", "json", hook.url)], timeout=60, queue_size=2)
    meter = Meter(budget=budget, log=str(tmp_path / "u.jsonl"), observers=[alerts],
                  calibrate=False)  # the pushed usage is not what "hi" would cost
    metered(meter)  # 50 %: an alert, whose POST now hangs
    assert hook.entered.wait(30)
    finished = []
    for _ in range(5):  # the calls go on while the receiver holds the POST
        call = meter.begin({"model": "qwen-plus", "messages": HELLO, "max_tokens": 1})
        finished.append(call.finish({"prompt_tokens": 1, "completion_tokens": 0}))
    assert [r.status for r in finished] == ["ok"] * 5
    assert hook.answered == 0 and not hook.hang.is_set()  # ... still hanging
    for n in range(5):  # a full queue drops work instead of growing or waiting
        alerts.sender.submit(lambda: [], key=("filler", n))
    assert alerts.sender.stats["dropped"] >= 1
    hook.hang.set()
    assert alerts.flush(30)
    assert len(hook.posts) == 1
    alerts.close()


def test_error_rate_alert(receivers, tmp_path):
    hook = receivers()
    rules = AlertRules(error_percent=20, error_calls=10, error_min_calls=5)
    alerts = AlertObserver([Channel("e", "json", hook.url, on=("errors",))], rules=rules)
    meter = Meter(log=str(tmp_path / "u.jsonl"), observers=[alerts])

    def failing() -> None:
        call = meter.begin({"model": "qwen-plus", "messages": HELLO})
        call.fail(ServerUnavailable("503 from upstream", status=503))

    failing()  # 1 of 1 failed, but fewer than 5 calls: too few to judge
    metered(meter, 2)
    assert alerts.flush(30) and hook.posts == []
    metered(meter, 1)  # 1 of 4
    failing()  # 2 of 5 = 40 %
    assert alerts.flush(30)
    assert len(hook.posts) == 1
    body = hook.posts[0].json
    assert body["kind"] == "errors" and body["errors"]["failures"] == 2
    assert body["errors"]["calls"] == 5 and body["errors"]["last_error"] == "server"
    queued = alerts.sender.stats["submitted"]
    for _ in range(5):  # still failing: the hour's alert went out already
        failing()
    assert alerts.flush(30) and len(hook.posts) == 1
    assert alerts.sender.stats["submitted"] == queued  # and nothing more was even queued
    alerts.close()


def test_limiter_saturation_and_refusal_alerts(receivers, tmp_path):
    hook = receivers()
    limiter = RateLimiter(limits={"qwen-plus": RateLimit(10, None)}, smooth=False)
    alerts = AlertObserver([Channel("l", "json", hook.url, on=("limiter",))])
    meter = Meter(limiter=limiter, log=str(tmp_path / "u.jsonl"), wait=False,
                  observers=[alerts], user="search")
    metered(meter, 8)
    assert alerts.flush(30) and hook.posts == []
    metered(meter, 1)  # 9 of 10 requests in the window: 90 %
    assert alerts.flush(30)
    assert [p.json["limiter"]["window"] for p in hook.posts] == ["rpm"]
    assert hook.posts[0].json["limiter"]["used"] == 9
    assert hook.posts[0].json["title"] == "search/qwen-plus used 90 % of its RPM"
    metered(meter, 1)
    with pytest.raises(RateLimited):
        metered(meter, 1)
    assert alerts.flush(30)
    assert [p.json["limiter"]["window"] for p in hook.posts] == ["rpm", "refused"]
    assert hook.posts[1].json["title"] == "Rate limiter refused calls of search"
    alerts.close()


def test_store_claims_are_one_per_mark_across_claimers(tmp_path):
    store = open_store(f"sqlite:///{tmp_path / 'claims.db'}")
    other = open_store(f"sqlite:///{tmp_path / 'claims.db'}")
    assert StoreClaims(store).claim("budget:global:b:2026-12:80") is True
    assert StoreClaims(other).claim("budget:global:b:2026-12:80") is False
    assert StoreClaims(other).claim("budget:global:b:2026-12:100") is True
    memory = MemoryClaims()
    assert memory.claim("m") and not memory.claim("m")
    store.close()
    other.close()


def _error_facts() -> dict:
    return {"upstream": "cn", "rate": Decimal("50.0"), "failures": 5, "calls": 10,
            "threshold": 20.0, "window_calls": 20, "window_seconds": "300", "period": "p",
            "last_error": "server"}
