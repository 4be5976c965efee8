"""The gateway's own answers, shaped as DashScope shapes its errors.

Compatible-mode paths get OpenAI's ``{"error": {message, type, param, code}}``; native paths
get DashScope's ``{"code", "message", "request_id"}``. SDKs then raise their usual exceptions
(``openai.RateLimitError``, a dashscope response with ``status_code`` 429 ...) and honour
``Retry-After``.
"""

from __future__ import annotations

import json
import math
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..base.errors import (
    BudgetExceeded,
    InvalidMessages,
    LimitExceeded,
    NotOffered,
    QwenMeterError,
    RateLimited,
    UnknownModel,
)

if TYPE_CHECKING:
    from .tenants import Tenant


@dataclass(frozen=True)
class Answer:
    """An HTTP answer the gateway gives without asking the upstream."""

    status: int
    code: str
    message: str
    kind: str  # a short reason for metrics: auth, too_large, bad_json, rate_limited ...
    native_code: str | None = None
    headers: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def body(self, native: bool, request_id: str) -> bytes:
        if native:
            data: dict[str, object] = {"code": self.native_code or self.code,
                                       "message": self.message, "request_id": request_id}
        else:
            data = {"error": {"message": self.message, "type": self.code, "param": None,
                              "code": self.code}}
        return json.dumps(data, ensure_ascii=False).encode("utf-8")

    def render(self, native: bool) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        request_id = uuid.uuid4().hex
        body = self.body(native, request_id)
        headers = [(b"content-type", b"application/json"),
                   (b"content-length", str(len(body)).encode()),
                   (b"x-request-id", request_id.encode()),
                   *((k.encode(), v.encode()) for k, v in self.headers)]
        return self.status, headers, body


def unauthorized() -> Answer:
    return Answer(401, "invalid_api_key", "Incorrect API key provided: the gateway knows no "
                  "such key, or it was revoked.", "auth", "InvalidApiKey")


#: For answers given before the body was read whole: the rest of it would otherwise keep the
#: connection open (uvicorn reads on into the finished request for as long as it comes).
CLOSE = ("connection", "close")


def too_large(limit: int) -> Answer:
    return Answer(413, "request_too_large", f"Request body is larger than the gateway's "
                  f"limit of {limit} bytes.", "too_large", "RequestTooLarge", (CLOSE,))


def bad_json(reason: str) -> Answer:
    return Answer(400, "invalid_request_error", f"Malformed JSON body: {reason}", "bad_json",
                  "InvalidParameter")


def bad_request(reason: str, kind: str = "bad_request") -> Answer:
    return Answer(400, "invalid_request_error", reason, kind, "InvalidParameter")


def model_denied(model: str, key: str) -> Answer:
    return Answer(403, "model_access_denied", f"Model {model!r} is not allowed for the "
                  f"gateway key {key!r}.", "model_denied", "Model.AccessDenied")


def header_denied(header: str, key: str) -> Answer:
    return Answer(403, "header_not_allowed", f"Header {header!r} chooses the account or a "
                  f"separately billed service and is not allowed for the gateway key {key!r} "
                  "(the key's config lists the account headers it may send).",
                  "header_denied", "AccessDenied")


def missing_model() -> Answer:
    return Answer(400, "invalid_request_error", "Missing required parameter: 'model' "
                  "(a non-empty string).", "bad_request", "InvalidParameter")


def not_allowed(path: str, method: str, allow: str) -> Answer:
    return Answer(405, "method_not_allowed", f"{method} is not allowed on {path}; use "
                  f"{allow}.", "method", "MethodNotAllowed", (("allow", allow),))


def body_timeout(seconds: float) -> Answer:
    return Answer(408, "request_timeout", f"The request body did not arrive within "
                  f"{seconds:g} s.", "body_timeout", "RequestTimeout", (CLOSE,))


def busy_client(limit: int) -> Answer:
    return Answer(429, "too_many_body_reads", f"This client address already has {limit} "
                  "request bodies in progress; finish them first.", "body_reads",
                  "Throttling", (("retry-after", "1"), CLOSE))


def internal_error() -> Answer:
    return Answer(500, "internal_error", "The gateway failed on this request; it has been "
                  "logged.", "internal", "InternalError")


def unknown_model(reason: str) -> Answer:
    return Answer(404, "model_not_found", reason, "unknown_model", "ModelNotFound")


def rate_limited(reason: str, retry_after: float) -> Answer:
    # Whole seconds, rounded up: a client that waits that long finds room.
    wait = max(1, math.ceil(retry_after))
    return Answer(429, "limit_requests", f"Requests rate limit exceeded, please try again "
                  f"later ({reason}).", "rate_limited", "Throttling.RateQuota",
                  (("retry-after", str(wait)),))


def budget_exceeded(reason: str) -> Answer:
    # 403 as DashScope answers a used-up quota: no SDK retries it, unlike a 429.
    return Answer(403, "budget_exceeded", f"Budget exceeded: {reason}", "budget",
                  "Budget.Exceeded")


def store_unavailable(retry_after: float) -> Answer:
    # Whole seconds, rounded up (as for 429): see Tenants.store_retry_after.
    wait = max(1, math.ceil(retry_after))
    return Answer(503, "service_unavailable", "The gateway's limit store is unavailable; "
                  f"try again in {wait} s.", "store", "ServiceUnavailable",
                  (("retry-after", str(wait)),))


def not_metered(path: str) -> Answer:
    return Answer(404, "not_found", f"{path} is not an endpoint this gateway meters.",
                  "not_found", "NotFound")


def upstream_failed(reason: str) -> Answer:
    return Answer(502, "upstream_error", f"The upstream did not answer: {reason}", "upstream",
                  "BadGateway")


def refusal(exc: QwenMeterError, tenant: Tenant) -> Answer:
    """The answer DashScope would give for what the pipeline refused."""
    who = f"gateway key {tenant.name!r}" if tenant.name else "gateway"
    if isinstance(exc, RateLimited):
        if math.isinf(exc.retry_after):
            return bad_request(f"{exc} ({who})", "rate_limited")
        return rate_limited(f"{who}: {exc}", exc.retry_after)
    if isinstance(exc, BudgetExceeded):
        return budget_exceeded(f"{exc} ({who})")
    if isinstance(exc, LimitExceeded):
        return bad_request(f"Range of input length exceeded: {exc}", "preflight")
    if isinstance(exc, (UnknownModel, NotOffered)):
        return unknown_model(str(exc))
    if isinstance(exc, InvalidMessages):
        return bad_request(str(exc))
    return bad_request(f"{type(exc).__name__}: {exc}")
