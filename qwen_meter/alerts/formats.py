"""Webhook payloads, one pure function per service: an :class:`~.events.Alert` in, the URL,
body and headers of one POST out. No I/O here; signatures take the time as an argument, so
the same inputs always give the same bytes.

Each function follows the service's documented custom-robot / incoming-webhook format:

- DingTalk custom robot: https://open.dingtalk.com/document/robots/custom-robot-access
  (msgtype ``markdown`` / ``text``) and, for the "加签" security setting,
  https://open.dingtalk.com/document/robots/customize-robot-security-settings —
  ``timestamp`` (ms) and ``sign`` = urlencode(base64(HMAC-SHA256(key=secret,
  msg="{timestamp}\\n{secret}"))) as query parameters.
- Feishu / Lark custom bot: https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot
  (Lark: https://open.larksuite.com/document/client-docs/bot-v3/add-custom-bot) — msg_type
  ``text`` or ``interactive`` (a card); with "签名校验", ``timestamp`` (s) and ``sign`` =
  base64(HMAC-SHA256(key="{timestamp}\\n{secret}", msg="")) in the JSON body.
- WeCom group robot: https://developer.work.weixin.qq.com/document/path/91770 — msgtype
  ``markdown`` (content at most 4096 bytes) or ``text``.
- Slack incoming webhook: https://api.slack.com/messaging/webhooks — ``text`` (the
  notification fallback) and Block Kit ``blocks``
  (https://api.slack.com/reference/block-kit/blocks).
- ``json``: qwen_meter's own schema, :data:`JSON_SCHEMA` (documented in docs/gateway.md).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from .events import Alert, lines, plain_text, title

#: the ``schema`` field of the plain JSON format; a new major number means a breaking change
JSON_SCHEMA = "qwen-meter.alert/1"
FORMATS = ("dingtalk", "feishu", "lark", "wecom", "slack", "json")
#: message styles each format accepts (the first is the default)
STYLES = {"dingtalk": ("markdown", "text"), "feishu": ("interactive", "text"),
          "lark": ("interactive", "text"), "wecom": ("markdown", "text"),
          "slack": ("blocks",), "json": ("json",)}
#: formats whose services answer HTTP 200 with an error code in the body on failure
ERRCODE_FORMATS = ("dingtalk", "feishu", "lark", "wecom")
_JSON = (("content-type", "application/json; charset=utf-8"),)


@dataclass(frozen=True)
class Outgoing:
    """One POST: where, what, with which headers."""

    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = _JSON

    def json(self) -> Any:
        return json.loads(self.body)


def _dump(payload: Any) -> bytes:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def with_query(url: str, **params: str) -> str:
    """``url`` with ``params`` added to (or replacing those in) its query string."""
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
             if k not in params]
    return urlunsplit(parts._replace(query=urlencode([*query, *params.items()])))


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign`` (base64; the caller URL-encodes it as a query parameter)."""
    digest = hmac.new(secret.encode(), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def feishu_sign(secret: str, timestamp_s: int) -> str:
    """Feishu / Lark's ``sign``: the key is timestamp and secret, the message is empty."""
    digest = hmac.new(f"{timestamp_s}\n{secret}".encode(), b"", hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _markdown(alert: Alert, lang: str, bullet: str = "- ") -> str:
    return "\n".join(f"{bullet}**{k}**: {v}" for k, v in lines(alert, lang))


def dingtalk(alert: Alert, url: str, *, lang: str, now: float, secret: str | None = None,
             style: str = "markdown") -> Outgoing:
    head = title(alert, lang)
    if style == "text":
        payload: dict[str, Any] = {"msgtype": "text", "text": {"content": plain_text(alert, lang)}}
    else:
        payload = {"msgtype": "markdown",
                   "markdown": {"title": head,
                                "text": f"#### {head}\n\n{_markdown(alert, lang)}\n"}}
    if secret:
        stamp = int(now * 1000)
        url = with_query(url, timestamp=str(stamp), sign=dingtalk_sign(secret, stamp))
    return Outgoing(url, _dump(payload))


def feishu(alert: Alert, url: str, *, lang: str, now: float, secret: str | None = None,
           style: str = "interactive") -> Outgoing:
    head = title(alert, lang)
    payload: dict[str, Any] = {}
    if secret:
        stamp = int(now)
        payload.update(timestamp=str(stamp), sign=feishu_sign(secret, stamp))
    if style == "text":
        payload.update(msg_type="text", content={"text": plain_text(alert, lang)})
    else:
        payload.update(msg_type="interactive", card={
            "config": {"wide_screen_mode": True},
            "header": {"title": {"tag": "plain_text", "content": head},
                       "template": "red" if alert.level == "critical" else "orange"},
            "elements": [{"tag": "div", "text": {"tag": "lark_md",
                                                 "content": _markdown(alert, lang, "")}}]})
    return Outgoing(url, _dump(payload))


def wecom(alert: Alert, url: str, *, lang: str, now: float, secret: str | None = None,
          style: str = "markdown") -> Outgoing:
    if style == "text":
        return Outgoing(url, _dump({"msgtype": "text",
                                    "text": {"content": plain_text(alert, lang)}}))
    color = "warning" if alert.level == "critical" else "comment"
    body = "\n".join(f'> {k}: <font color="{color}">{v}</font>' for k, v in lines(alert, lang))
    content = f"**{title(alert, lang)}**\n{body}"
    # WeCom refuses markdown over 4096 bytes; facts come first, so cut at the end.
    content = content.encode()[:4096].decode(errors="ignore")
    return Outgoing(url, _dump({"msgtype": "markdown", "markdown": {"content": content}}))


def slack(alert: Alert, url: str, *, lang: str, now: float, secret: str | None = None,
          style: str = "blocks") -> Outgoing:
    head = title(alert, lang)
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in lines(alert, lang)][:10]
    payload = {"text": head,  # the notification and the fallback where blocks don't show
               "blocks": [{"type": "header", "text": {"type": "plain_text", "text": head[:150]}},
                          {"type": "section", "fields": fields},
                          {"type": "context", "elements": [
                              {"type": "mrkdwn", "text": f"qwen-meter · `{alert.mark}`"}]}]}
    return Outgoing(url, _dump(payload))


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    return value


def json_payload(alert: Alert, lang: str) -> dict[str, Any]:
    """The plain JSON format (schema :data:`JSON_SCHEMA`): money as decimal strings with
    their currency, the words in ``lang`` beside the facts."""
    return {"schema": JSON_SCHEMA, "kind": alert.kind, "level": alert.level,
            "mark": alert.mark, "time": alert.time, "source": alert.source, "lang": lang,
            "title": title(alert, lang), "text": plain_text(alert, lang),
            alert.kind: {k: _plain(v) for k, v in alert.facts.items()}}


def plain_json(alert: Alert, url: str, *, lang: str, now: float, secret: str | None = None,
               style: str = "json") -> Outgoing:
    headers: tuple[tuple[str, str], ...] = _JSON
    body = _dump(json_payload(alert, lang))
    if secret:  # lets a receiver check the sender: HMAC-SHA256 of timestamp "." body
        stamp = str(int(now))
        digest = hmac.new(secret.encode(), stamp.encode() + b"." + body, hashlib.sha256)
        headers = (*_JSON, ("x-qwen-meter-timestamp", stamp),
                   ("x-qwen-meter-signature", f"sha256={digest.hexdigest()}"))
    return Outgoing(url, body, headers)


RENDERERS: dict[str, Callable[..., Outgoing]] = {
    "dingtalk": dingtalk, "feishu": feishu, "lark": feishu, "wecom": wecom, "slack": slack,
    "json": plain_json}


def render(fmt: str, alert: Alert, url: str, *, lang: str = "en", now: float,
           secret: str | None = None, style: str | None = None) -> Outgoing:
    """The POST that delivers ``alert`` in format ``fmt`` (one of :data:`FORMATS`)."""
    return RENDERERS[fmt](alert, url, lang=lang, now=now, secret=secret,
                          style=style or STYLES[fmt][0])
