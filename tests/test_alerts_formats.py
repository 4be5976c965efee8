"""Alert payloads (DingTalk, Feishu/Lark, WeCom, Slack, plain JSON), their signatures checked
the way each service documents checking them, and the alerts config's errors."""

from __future__ import annotations

import base64
import hashlib
import hmac
from decimal import Decimal
from urllib.parse import parse_qs, unquote_plus, urlsplit

import pytest

from qwen_meter.alerts import JSON_SCHEMA, Alert, Channel, judge, parse_alerts, render
from qwen_meter.alerts.delivery import backoff, retry_after
from qwen_meter.alerts.events import money
from qwen_meter.base.errors import GatewayConfigError

NOW = 1_765_000_000.123
URL = "https://oapi.dingtalk.com/robot/send?access_token=abc"


def budget_alert(threshold: float = 80, spent: str = "8.10", limit: str = "10",
                 currency: str = "CNY") -> Alert:
    return Alert("budget", f"budget:key=search:daily:2026-12-07:{threshold:g}",
                 "critical" if threshold >= 100 else "warning",
                 {"name": "daily", "scope": "key", "subject": "search", "per": "day",
                  "period": "2026-12-07", "threshold": threshold,
                  "percent": Decimal(spent) * 100 / Decimal(limit), "spent": Decimal(spent),
                  "limit": Decimal(limit), "currency": currency, "mode": "hard"},
                 time="2026-12-07T21:00:00+00:00", source="gw-1:42")


def test_dingtalk_markdown_and_sign_verify_as_documented():
    out = render("dingtalk", budget_alert(), URL, lang="zh", now=NOW, secret="SECxyz")
    query = parse_qs(urlsplit(out.url).query)
    assert query["access_token"] == ["abc"]  # the webhook's own token is kept
    stamp = query["timestamp"][0]
    assert stamp == str(int(NOW * 1000))  # milliseconds
    # DingTalk's check: base64(HMAC-SHA256(key=secret, "timestamp\nsecret")), URL-encoded.
    expected = base64.b64encode(hmac.new(b"SECxyz", f"{stamp}\nSECxyz".encode(),
                                         hashlib.sha256).digest()).decode()
    assert query["sign"] == [expected]
    assert "sign=" + expected.replace("+", "%2B").replace("/", "%2F").replace("=", "%3D") \
        in out.url
    body = out.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["title"] == "预算 daily（密钥 search）已用 80 %"
    assert "¥8.10" in body["markdown"]["text"] and "¥10.00" in body["markdown"]["text"]
    plain = render("dingtalk", budget_alert(), URL, lang="en", now=NOW, style="text").json()
    assert plain["msgtype"] == "text"
    assert plain["text"]["content"].startswith("Budget daily (key search) reached 80 %")
    assert "sign" not in render("dingtalk", budget_alert(), URL, lang="en", now=NOW).url


def test_feishu_card_text_and_signature():
    hook = "https://open.feishu.cn/open-apis/bot/v2/hook/xyz"
    out = render("feishu", budget_alert(100, "10.2"), hook, lang="zh", now=NOW, secret="s3")
    body = out.json()
    assert out.url == hook
    assert body["timestamp"] == str(int(NOW))  # seconds, as a string
    # Feishu's check: base64(HMAC-SHA256(key="timestamp\nsecret", message="")).
    key = f"{body['timestamp']}\ns3".encode()
    assert body["sign"] == base64.b64encode(hmac.new(key, b"", hashlib.sha256).digest()).decode()
    assert body["msg_type"] == "interactive"
    card = body["card"]
    assert card["header"]["title"]["content"] == "预算 daily（密钥 search）已用 100 %"
    assert card["header"]["template"] == "red"
    assert "硬预算已用完" in card["elements"][0]["text"]["content"]
    text = render("lark", budget_alert(), hook, lang="en", now=NOW, style="text").json()
    assert text == {"msg_type": "text", "content": {"text": text["content"]["text"]}}
    assert "Spent: ¥8.10" in text["content"]["text"]


def test_wecom_markdown_under_its_byte_cap():
    out = render("wecom", budget_alert(), "https://qyapi.weixin.qq.com/x?key=k", lang="zh",
                 now=NOW)
    body = out.json()
    assert body["msgtype"] == "markdown"
    assert body["markdown"]["content"].startswith("**预算 daily")
    huge = Alert("errors", "errors:x", "critical",
                 {"upstream": "cn", "rate": 50, "failures": 5, "calls": 10, "window_calls": 20,
                  "window_seconds": "300", "period": "p", "last_error": "界" * 3000})
    content = render("wecom", huge, "https://q/x", lang="zh", now=NOW).json()["markdown"]
    assert len(content["content"].encode()) <= 4096


def test_slack_text_and_blocks():
    body = render("slack", budget_alert(), "https://hooks.slack.com/services/T/B/X", lang="en",
                  now=NOW).json()
    assert body["text"] == "Budget daily (key search) reached 80 %"
    types = [b["type"] for b in body["blocks"]]
    assert types == ["header", "section", "context"]
    fields = {f["text"].split("\n")[0]: f["text"].split("\n")[1]
              for f in body["blocks"][1]["fields"]}
    assert fields["*Spent*"] == "¥8.10" and fields["*Limit*"] == "¥10.00"
    assert fields["*Used*"] == "81 %"


def test_plain_json_schema_and_hmac_header():
    out = render("json", budget_alert(currency="USD", spent="0.5", limit="1"), "http://x/h",
                 lang="en", now=NOW, secret="k")
    body = out.json()
    assert body["schema"] == JSON_SCHEMA == "qwen-meter.alert/1"
    assert body["kind"] == "budget" and body["level"] == "warning"
    assert body["budget"]["spent"] == "0.5" and body["budget"]["currency"] == "USD"
    assert body["budget"]["limit"] == "1"  # decimal strings, never floats
    assert "$0.5" in body["text"]
    headers = dict(out.headers)
    stamp = headers["x-qwen-meter-timestamp"]
    mac = hmac.new(b"k", stamp.encode() + b"." + out.body, hashlib.sha256).hexdigest()
    assert headers["x-qwen-meter-signature"] == f"sha256={mac}"


def test_money_keeps_its_currency():
    assert money(Decimal("1234.5"), "CNY") == "¥1,234.50"
    assert money(Decimal("0.0123"), "USD") == "$0.0123"
    assert money(Decimal("0.000012"), "CNY") == "¥0.000012"
    usd = render("json", budget_alert(currency="USD"), "http://x", lang="en", now=NOW).json()
    assert "¥" not in usd["text"] and "$8.10" in usd["text"]


def test_limiter_and_error_words():
    limiter = Alert("limiter", "limiter:search:h:rpm:90", "warning",
                    {"key": "search", "window": "rpm", "used": 9, "limit": 10,
                     "threshold": 90.0, "period": "2026-12-07T21"})
    assert render("slack", limiter, "http://x", lang="en", now=NOW).json()["text"] == \
        "search used 90 % of its RPM"
    assert render("dingtalk", limiter, "http://x", lang="zh", now=NOW).json()["markdown"][
        "title"] == "search 的 RPM 已用 90 %"
    errors = Alert("errors", "errors:cn:h:20", "critical",
                   {"upstream": "cn", "rate": Decimal("25.0"), "failures": 5, "calls": 20,
                    "window_calls": 20, "window_seconds": "300", "period": "h",
                    "last_error": "ServerUnavailable"})
    text = render("json", errors, "http://x", lang="en", now=NOW).json()
    assert text["title"] == "Upstream error rate 25 % (cn)"
    assert text["errors"]["rate"] == "25.0"


def test_judge_errcode_bodies_and_retry_after():
    ok = judge("dingtalk", 200, b'{"errcode":0,"errmsg":"ok"}', {})
    assert ok.ok
    bad_sign = judge("dingtalk", 200, b'{"errcode":310000,"errmsg":"sign not match"}', {})
    assert not bad_sign.ok and not bad_sign.retry and "310000" in bad_sign.reason
    too_fast = judge("wecom", 200, b'{"errcode":45009,"errmsg":"freq"}', {})
    assert not too_fast.ok and too_fast.retry
    assert not judge("feishu", 200, b'{"code":19021,"msg":"sign match fail"}', {}).ok
    assert judge("slack", 200, b"ok", {}).ok
    assert judge("slack", 404, b"no_service", {}).retry is False
    throttled = judge("slack", 429, b"", {"retry-after": "7"})
    assert throttled.retry and throttled.retry_after == 7.0
    assert judge("json", 503, b"", {}).retry
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", 0.0) is not None
    # Backoff doubles (with jitter in its upper half) and never undercuts Retry-After.
    import random

    rng = random.Random(1)
    waits = [backoff(n, 1.0, 60.0, rng=rng) for n in (1, 2, 3, 4)]
    assert all(2 ** (n - 1) / 2 <= w <= 2 ** (n - 1) for n, w in zip((1, 2, 3, 4), waits,
                                                                       strict=True))
    assert backoff(1, 1.0, 60.0, hint=30.0) == 30.0


def test_channel_wants_by_kind_and_threshold():
    slack = Channel("s", "slack", "http://x", on=("budget",), thresholds=(80.0, 100.0))
    assert slack.wants(budget_alert(80)) and not slack.wants(budget_alert(50))
    assert not slack.wants(Alert("errors", "e", "critical", {}))
    assert "http://x" not in repr(slack)  # a webhook URL is a credential


@pytest.mark.parametrize(("section", "field", "words"), [
    ([{"name": "a", "format": "teams", "url": "https://x"}], "alerts[0].format", "one of"),
    ([{"name": "a", "format": "slack"}], "alerts[0].url", "url_env"),
    ([{"name": "a", "format": "slack", "url": "ftp://x"}], "alerts[0].url", "http"),
    ([{"name": "a", "format": "slack", "url": "https://x", "lang": "fr"}], "alerts[0].lang",
     "zh"),
    ([{"name": "a", "format": "slack", "url": "https://x", "thresholds": [80, -1]}],
     "alerts[0].thresholds", "percentages"),
    ([{"name": "a", "format": "slack", "url": "https://x", "on": ["budgets"]}],
     "alerts[0].on", "budget, limiter, errors"),
    ([{"name": "a", "format": "dingtalk", "url": "https://x", "style": "card"}],
     "alerts[0].style", "markdown"),
    ([{"name": "a", "format": "slack", "url": "https://x", "colour": 1}], "alerts[0].colour",
     "unknown field"),
    ([{"name": "a", "format": "slack", "url": "https://x"},
      {"name": "a", "format": "json", "url": "https://y"}], "alerts[1].name", "duplicate"),
    ({"channels": [{"name": "a", "format": "slack", "url": "https://x"}],
      "rules": {"error_percent": 200}}, "alerts.rules.error_percent", "<= 100"),
    ({"channels": [{"name": "a", "format": "slack", "url": "https://x"}], "tries": 0},
     "alerts.tries", ">= 1"),
    ({"channels": []}, "alerts.channels", "at least one"),
])
def test_config_errors_name_the_field(section, field, words):
    with pytest.raises(GatewayConfigError) as caught:
        parse_alerts(section, "gw.yaml")
    assert caught.value.field == field
    assert words in str(caught.value) and "gw.yaml" in str(caught.value)


def test_config_reads_environment_at_start(monkeypatch):
    section = parse_alerts([{"name": "ops", "format": "dingtalk", "url_env": "QM_T_DT",
                             "secret_env": "QM_T_DT_SECRET", "lang": "zh",
                             "on": ["budget", "errors"], "thresholds": [80, 50, 100]}], "g.yaml")
    assert section is not None
    assert section.channels[0].thresholds == (50.0, 80.0, 100.0)
    monkeypatch.delenv("QM_T_DT", raising=False)
    with pytest.raises(GatewayConfigError) as caught:
        section.ready_channels("g.yaml")
    assert caught.value.field == "alerts[0].url_env"
    monkeypatch.setenv("QM_T_DT", "https://oapi.dingtalk.com/robot/send?access_token=z")
    monkeypatch.setenv("QM_T_DT_SECRET", "SECz")
    channel = section.ready_channels("g.yaml")[0]
    assert channel.secret == "SECz" and channel.lang == "zh"
    assert unquote_plus(channel.url).endswith("access_token=z")
