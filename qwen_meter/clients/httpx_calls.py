"""What the httpx transport reads of an OpenAI-compatible call, and what it changes.

Which ``POST`` paths are metered (chat, completions, responses, embeddings), the JSON body as
the meter counts it (a Responses API body as the chat request it stands for), usage asked for
in a chat stream that did not ask, and the outcome read from a JSON answer or an error answer.
"""

from __future__ import annotations

import json
from typing import Any

from ..meter.call import MeteredCall
from ..meter.server_errors import DashScopeError, classify

_ENDPOINTS = (("/chat/completions", "chat"), ("/embeddings", "embeddings"),
              ("/completions", "completions"), ("/responses", "responses"))


def _endpoint(request: Any) -> str | None:
    if request.method != "POST":
        return None
    path = request.url.path.rstrip("/")
    return next((name for suffix, name in _ENDPOINTS if path.endswith(suffix)), None)


def _text_of(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text") or "") for part in content
                       if isinstance(part, dict))
    return ""


def responses_request(body: dict[str, Any]) -> dict[str, Any]:
    """A Responses API body as the chat request it is counted as (instructions → system;
    input text or message items → messages; other items are not counted)."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        messages.append({"role": "user", "content": items})
    elif isinstance(items, list):
        for item in items:
            if isinstance(item, dict) and item.get("role") in ("system", "developer", "user",
                                                                "assistant"):
                role = "system" if item["role"] == "developer" else item["role"]
                messages.append({"role": role, "content": _text_of(item.get("content"))})
    return {"model": body.get("model"), "messages": messages,
            "max_tokens": body.get("max_output_tokens"), "stream": bool(body.get("stream")),
            "user": body.get("user"), "metadata": body.get("metadata"),
            "enable_thinking": body.get("enable_thinking")}


def _prepare_body(request: Any) -> tuple[str, dict[str, Any], dict[str, Any]] | None:
    endpoint = _endpoint(request)
    if endpoint is None:
        return None
    try:
        body = json.loads(request.content or b"null")
    except ValueError:
        return None
    except Exception:  # RequestNotRead: a streaming upload, not a JSON API call
        return None
    if not isinstance(body, dict):
        return None
    metered = responses_request(body) if endpoint == "responses" else body
    return endpoint, body, metered


def _with_usage(hx: Any, request: Any, body: dict[str, Any]) -> tuple[Any, bool]:
    """The request, asking for usage in a chat stream that did not (and whether it did)."""
    if not (body.get("stream") and not (body.get("stream_options") or {}).get("include_usage")):
        return request, False
    body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    headers = hx.Headers(request.headers)
    headers.pop("content-length", None)
    return hx.Request(request.method, request.url, headers=headers,
                      content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                      extensions=request.extensions), True


def _error(response: Any) -> DashScopeError:
    return classify(response.status_code, response.content, response.headers)


def _is_stream(response: Any) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")


def _json_outcome(endpoint: str, response: Any) -> dict[str, Any]:
    try:
        data = response.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        # A success status with no answer in it (a proxy's page, a cut body): the server
        # may have billed, so the call is charged at its estimate and says why.
        kind = response.headers.get("content-type") or "no content type"
        return {"usage": None, "reply": None, "http_status": response.status_code,
                "request_id": response.headers.get("x-request-id"), "status": "unknown",
                "error": f"HTTP {response.status_code} with a body that is not a JSON answer "
                         f"({kind}, {len(response.content)} bytes); outcome unknown, "
                         "charged at the pre-call estimate"}
    reply: Any = None
    if endpoint == "responses":
        texts = [part.get("text") or "" for item in data.get("output") or []
                 if isinstance(item, dict) for part in item.get("content") or []
                 if isinstance(part, dict)]
        reply = "".join(texts)
    else:
        choices = data.get("choices") or [{}]
        first = choices[0] if isinstance(choices[0], dict) else {}
        reply = first.get("message") if endpoint == "chat" else first.get("text")
    return {"usage": data.get("usage"), "served_model": data.get("model"),
            "request_id": data.get("id") or response.headers.get("x-request-id"),
            "reply": reply, "http_status": response.status_code,
            "finish_reasons": finish_reasons(data)}


def finish_reasons(data: dict[str, Any]) -> tuple[str, ...]:
    """Each choice's ``finish_reason`` (compatible mode, or a native ``output``)."""
    output = data.get("output")
    holder = output if isinstance(output, dict) else data
    choices = holder.get("choices")
    if isinstance(choices, list):
        found = [c.get("finish_reason") for c in choices if isinstance(c, dict)]
    else:
        found = [holder.get("finish_reason")]
    return tuple(str(r) for r in found if isinstance(r, str) and r and r != "null")


def _final(response: Any, call: MeteredCall) -> Any:
    """The error answer the meter gives up on, marked so the client does not retry it."""
    if call.meter.retry.max_retries > 0:  # else retries are left to the client
        response.headers["x-should-retry"] = "false"
    return response
