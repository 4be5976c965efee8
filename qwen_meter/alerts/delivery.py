"""Where alerts go (:class:`Channel`) and how one delivery attempt is judged: what counts as
delivered, what is worth retrying, and how long to wait before the next try. No I/O here;
:mod:`.sender` does the sending."""

from __future__ import annotations

import email.utils
import json
import random
import time
from dataclasses import dataclass, field

from .events import KINDS, Alert
from .formats import ERRCODE_FORMATS, Outgoing, render

DEFAULT_THRESHOLDS = (50.0, 80.0, 100.0)
#: error codes meaning "too many messages, slow down" (retried, like HTTP 429): DingTalk
#: 130101, WeCom 45009, Feishu 9499 and 11232 (their robots allow ~20 messages a minute)
RATE_LIMIT_CODES = frozenset({130101, 45009, 9499, 11232})
#: never wait longer than this between tries, whatever Retry-After says
MAX_WAIT = 300.0


@dataclass(frozen=True)
class Channel:
    """One webhook: its format, URL (and signing secret), language and what it wants."""

    name: str
    format: str
    url: str = field(repr=False)  # webhook URLs carry their access token
    secret: str | None = field(default=None, repr=False)
    lang: str = "en"
    style: str | None = None
    on: tuple[str, ...] = KINDS
    thresholds: tuple[float, ...] = DEFAULT_THRESHOLDS

    def wants(self, alert: Alert) -> bool:
        if alert.kind not in self.on:
            return False
        if alert.kind == "budget":
            return float(alert.facts["threshold"]) in self.thresholds
        return True

    def request(self, alert: Alert, now: float | None = None) -> Outgoing:
        """The POST for ``alert``, signed now (DingTalk refuses signatures over an hour old,
        so every retry is signed afresh)."""
        return render(self.format, alert, self.url, lang=self.lang,
                      now=time.time() if now is None else now, secret=self.secret,
                      style=self.style)


@dataclass(frozen=True)
class Verdict:
    """What one attempt came to."""

    ok: bool
    retry: bool = False
    reason: str = ""
    retry_after: float | None = None


def retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - now)


def _error_code(body: bytes) -> tuple[int | None, str]:
    try:
        data = json.loads(body)
    except ValueError:
        return None, ""
    if not isinstance(data, dict):
        return None, ""
    # DingTalk and WeCom: errcode / errmsg; Feishu: code / msg (older bots: StatusCode).
    for code_key, text_key in (("errcode", "errmsg"), ("code", "msg"),
                               ("StatusCode", "StatusMessage")):
        code = data.get(code_key)
        if isinstance(code, int) and not isinstance(code, bool):
            return code, str(data.get(text_key, ""))[:200]
    return None, ""


def judge(fmt: str, status: int, body: bytes, headers: dict[str, str],
          now: float | None = None) -> Verdict:
    """A verdict on an HTTP answer: 2xx is delivered — unless a Chinese robot's body carries
    a non-zero error code; 429, 408 and 5xx (and the robots' rate-limit codes) are retried;
    any other 4xx (a wrong URL or signature) is not: trying again cannot fix it."""
    now = time.time() if now is None else now
    wait = retry_after(headers.get("retry-after"), now)
    if 200 <= status < 300:
        if fmt in ERRCODE_FORMATS:
            code, message = _error_code(body)
            if code not in (None, 0):
                return Verdict(False, code in RATE_LIMIT_CODES,
                               f"HTTP {status} with error code {code} {message}".rstrip(), wait)
        return Verdict(True)
    text = body[:200].decode("utf-8", "replace").strip()
    reason = f"HTTP {status}" + (f": {text}" if text else "")
    return Verdict(False, status in (408, 429) or status >= 500, reason, wait)


def backoff(attempt: int, base: float, cap: float, hint: float | None = None,
            rng: random.Random | None = None) -> float:
    """Seconds before try ``attempt + 1``: exponential (``base`` · 2^(attempt-1), at most
    ``cap``) with jitter (half fixed, half random, so replicas that failed together do not
    retry together), and never sooner than the server's ``Retry-After``."""
    delay = min(cap, base * 2.0 ** max(0, attempt - 1))
    delay = delay / 2 + float((rng or random).uniform(0, delay / 2))
    if hint is not None:
        delay = max(delay, hint)
    return min(delay, MAX_WAIT)
