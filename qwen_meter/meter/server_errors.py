"""DashScope's error answers, classified, and the retry policy that follows from them.

Model Studio answers 429 for three rate limits (RPM ``Throttling.RateQuota``, TPM
``Throttling.AllocationQuota`` — whose OpenAI-compatible text is "You exceeded your current quota,
please check your plan and billing details" or "Allocated quota exceeded" — and a burst within
a second ``Throttling.BurstRate``); all three clear within a minute and are retried. The account
itself is out of money with ``Arrearage`` (HTTP 400 "Access denied, please make sure your account
is in good standing") and a free-tier-only account that used its free quota gets 403
``AllocationQuota.FreeTierOnly``: those are :class:`QuotaExhausted` and never retried (rate-limit
page, Last Updated 2026-06-25; error-code page). 401 is a bad key; 500 / 502 / 503 / 504 mean the
service struggles and are retried.
"""

from __future__ import annotations

import email.utils
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..base.errors import QwenMeterError
from .log import redact


class DashScopeError(QwenMeterError):
    """A call DashScope refused; ``kind`` says why and ``retryable`` whether to try again."""

    kind = "error"
    retryable = False

    def __init__(self, message: str, *, status: int | None = None, code: str | None = None,
                 retry_after: float | None = None) -> None:
        self.status = status
        self.code = code
        self.retry_after = retry_after
        super().__init__(message)


class ServerRateLimited(DashScopeError):
    """429: requests or tokens per minute, or a burst within a second. Retry later."""

    kind = "rate_limited"
    retryable = True
    #: which limit: "requests", "tokens" or "burst"
    limit = "requests"


class QuotaExhausted(DashScopeError):
    """The account is in arrears (``Arrearage``) or free-tier-only with its free quota used
    (403 ``AllocationQuota.FreeTierOnly``). A retry cannot help."""

    kind = "quota"


class AuthenticationFailed(DashScopeError):
    """401: the API key is wrong or missing."""

    kind = "auth"


class ServerUnavailable(DashScopeError):
    """500 / 502 / 503 / 504: DashScope failed or is overloaded. Retry later."""

    kind = "server"
    retryable = True


class BadRequest(DashScopeError):
    """400 / 404 / 413 and other answers a retry cannot fix."""

    kind = "bad_request"


_RPM = ("requests rate limit", "throttling.ratequota", "rate limit reached for requests",
        "exceeding rate quota", "current requests list")
# A 429 "You exceeded your current quota" (type insufficient_quota in compatible mode) is
# DashScope's TPM limit, not an exhausted account: it clears within the minute.
_TPM = ("allocated quota exceeded", "throttling.allocationquota", "exceeded your current quota",
        "insufficient_quota")
_BURST = ("rate increased too quickly", "throttling.burstrate")
_QUOTA = ("arrearage", "good standing", "free tier", "freetieronly", "allocationquota.freetier")


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """``Retry-After`` (seconds or an HTTP date) as seconds, if present and sane."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        when = email.utils.parsedate_to_datetime(value) if value else None
        return None if when is None else max(0.0, when.timestamp() - time.time())


def _text(body: Any) -> tuple[str | None, str]:
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except ValueError:
            return None, body
    if isinstance(body, Mapping):
        error = body.get("error")
        inner: Mapping[str, Any] = error if isinstance(error, Mapping) else body
        code = inner.get("code") or inner.get("type")
        message = inner.get("message") or inner.get("msg") or ""
        return (str(code) if code is not None else None), str(message)
    return None, "" if body is None else str(body)


def classify(status: int | None, body: Any = None,
             headers: Mapping[str, str] | None = None) -> DashScopeError:
    """The typed error for an HTTP status and error body (OpenAI-compatible or native)."""
    code, message = _text(body)
    haystack = f"{code or ''} {message}".lower()
    after = retry_after_seconds(headers)
    text = redact(message or f"HTTP {status}")
    kind: type[DashScopeError]
    if status == 401 or "invalid_api_key" in haystack or "invalidapikey" in haystack:
        kind = AuthenticationFailed
    elif any(k in haystack for k in _QUOTA) or status == 403:
        kind = QuotaExhausted
    elif status == 429 or any(k in haystack for k in (*_RPM, *_BURST)) or (
            status is None and any(k in haystack for k in _TPM)):
        limited = ServerRateLimited(text, status=status, code=code, retry_after=after)
        limited.limit = ("tokens" if any(k in haystack for k in _TPM) else
                         "burst" if any(k in haystack for k in _BURST) else "requests")
        return limited
    elif status is not None and status >= 500:
        kind = ServerUnavailable
    else:
        kind = BadRequest
    return kind(text, status=status, code=code, retry_after=after)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, honouring ``Retry-After``."""

    max_retries: int = 2
    base: float = 0.5
    cap: float = 20.0
    sleep: Callable[[float], None] = time.sleep

    def delay(self, attempt: int, error: DashScopeError) -> float:
        """Seconds to wait before retry number ``attempt`` (1-based)."""
        if error.retry_after is not None:
            return min(error.retry_after, self.cap)
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))

    def should_retry(self, attempt: int, error: DashScopeError) -> bool:
        return error.retryable and attempt <= self.max_retries
