"""The endpoints the gateway meters, and what each needs from a request and its answer.

A :class:`Route` turns the client's body into the request the meter counts (chat-shaped, or
embeddings), says whether the call streams, asks a compatible-mode stream for its usage when
the client did not (and then hides that extra chunk), and reads usage, reply, served model and
request id from a JSON answer.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .streams import CompatibleStream, NativeStream, ResponsesStream, StreamReader, native_reply

COMPATIBLE = "/compatible-mode/v1"
NATIVE = "/api/v1/services/aigc"


@dataclass(frozen=True)
class Prepared:
    """What the meter counts, what goes upstream, and how to read the answer."""

    meter_request: dict[str, Any]
    endpoint: str  # the meter's endpoint: chat or embeddings
    body: bytes  # the client's bytes, unless usage had to be asked for
    stream: bool
    hide_usage: bool


@dataclass(frozen=True)
class Route:
    path: str
    kind: str  # chat, embeddings, responses, completions, native

    @property
    def native(self) -> bool:
        return self.kind == "native"

    def prepare(self, body: dict[str, Any], raw: bytes, headers: Mapping[str, str]
                ) -> Prepared:
        model = body.get("model")
        if self.kind == "embeddings":
            return Prepared({"model": model, "input": body.get("input")}, "embeddings", raw,
                            False, False)
        if self.kind == "native":
            return self._native(body, raw, headers)
        stream = body.get("stream") is True
        if self.kind == "responses":
            request = {"model": model, "messages": _responses_messages(body),
                       "max_tokens": body.get("max_output_tokens"), "stream": stream}
            return Prepared(request, "chat", raw, stream, False)
        if self.kind == "completions":
            request = {"model": model, "messages": [{"role": "user",
                                                     "content": _text(body.get("prompt"))}],
                       "max_tokens": body.get("max_tokens"), "stream": stream}
        else:
            request = dict(body)
        options = body.get("stream_options")
        hide = stream and not (isinstance(options, dict) and options.get("include_usage"))
        if hide:
            # Ask for the usage chunk the client did not ask for; the reader hides it again.
            raw = _ask_usage(body, raw, options)
        return Prepared(request, "chat", raw, stream, hide)

    def _native(self, body: dict[str, Any], raw: bytes, headers: Mapping[str, str]
                ) -> Prepared:
        inputs = _mapping(body.get("input"))
        params = _mapping(body.get("parameters"))
        messages = inputs.get("messages")
        if messages is None and inputs.get("prompt") is not None:
            messages = [{"role": "user", "content": inputs.get("prompt")}]
        stream = headers.get("x-dashscope-sse", "").lower() == "enable" \
            or "text/event-stream" in headers.get("accept", "") or params.get("stream") is True
        request = {"model": body.get("model"), "messages": messages,
                   "tools": params.get("tools"), "max_tokens": params.get("max_tokens"),
                   "enable_thinking": params.get("enable_thinking"), "stream": stream,
                   "vl_high_resolution_images": params.get("vl_high_resolution_images")}
        return Prepared(request, "chat", raw, stream, False)

    def reader(self, prepared: Prepared) -> StreamReader:
        if self.kind == "native":
            params = json.loads(prepared.body).get("parameters") or {}
            return NativeStream(bool(params.get("incremental_output")))
        if self.kind == "responses":
            return ResponsesStream()
        return CompatibleStream(hide_usage_chunk=prepared.hide_usage)

    def ended(self, reader: StreamReader, tail: bytes) -> bool:
        """Did the stream end as the protocol ends it (else the connection was dropped)?"""
        if isinstance(reader, NativeStream):
            return reader.finish_reason is not None or reader.error is not None
        if isinstance(reader, ResponsesStream):
            return reader.ended
        return b"[DONE]" in tail

    def read_json(self, data: Any) -> tuple[Any, Any, str | None, str | None]:
        """(usage, reply, served model, request id) of a JSON answer."""
        if not isinstance(data, dict):
            return None, None, None, None
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        if self.kind == "native":
            text, thought = native_reply(data.get("output"))
            return usage, {"content": text, "reasoning_content": thought or None}, None, \
                data.get("request_id")
        reply: Any = None
        if self.kind == "responses":
            reply = {"content": _responses_text(data.get("output"))}
        elif self.kind in ("chat", "completions"):
            choices = data.get("choices") or [{}]
            first = choices[0] if isinstance(choices[0], dict) else {}
            reply = first.get("message") or {"content": first.get("text") or ""}
        return usage, reply, data.get("model"), data.get("id")


_ASK_USAGE = b',"stream_options":{"include_usage":true}}'


def _ask_usage(body: dict[str, Any], raw: bytes, options: Any) -> bytes:
    """The client's body with ``stream_options.include_usage`` set. Without any
    ``stream_options`` the member is appended to the client's own bytes (an object in UTF-8
    or ASCII: it ends with ``}``), which costs nothing next to encoding the body again;
    otherwise the body is encoded again with the option merged in."""
    end = len(raw.rstrip())
    if options is None and "stream_options" not in body and raw[:1] == b"{" \
            and raw[end - 1:end] == b"}":
        return raw[:end - 1] + _ASK_USAGE
    merged = {**body, "stream_options": {**(options if isinstance(options, dict) else {}),
                                         "include_usage": True}}
    return json.dumps(merged, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "".join(v for v in value if isinstance(v, str))
    return value if isinstance(value, str) else ""


def _responses_messages(body: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A Responses-API ``input`` (a string or message items) as chat messages, to count."""
    messages: list[dict[str, Any]] = []
    if isinstance(body.get("instructions"), str):
        messages.append({"role": "system", "content": body["instructions"]})
    items = body.get("input")
    if isinstance(items, str):
        return [*messages, {"role": "user", "content": items}]
    for item in items if isinstance(items, list) else []:
        if not isinstance(item, dict) or item.get("type", "message") != "message":
            continue
        content = item.get("content")
        if isinstance(content, list):  # input_text parts -> text
            content = "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        role = item.get("role") if item.get("role") in ("system", "user", "assistant") \
            else "user"
        messages.append({"role": role, "content": content or ""})
    return messages or [{"role": "user", "content": ""}]


def _responses_text(output: Any) -> str:
    parts = []
    for item in output if isinstance(output, list) else []:
        for part in (item.get("content") or []) if isinstance(item, dict) else []:
            if isinstance(part, dict) and part.get("type") == "output_text":
                parts.append(str(part.get("text") or ""))
    return "".join(parts)


ROUTES = {route.path: route for route in (
    Route(f"{COMPATIBLE}/chat/completions", "chat"),
    Route(f"{COMPATIBLE}/embeddings", "embeddings"),
    Route(f"{COMPATIBLE}/responses", "responses"),
    # The Responses API's first path, still served (DashScope announces its retirement).
    Route(f"/api/v2/apps/protocols{COMPATIBLE}/responses", "responses"),
    Route(f"{COMPATIBLE}/completions", "completions"),
    Route(f"{NATIVE}/text-generation/generation", "native"),
    Route(f"{NATIVE}/multimodal-generation/generation", "native"),
)}

#: GET paths passed through for free: the model list and one model (compatible mode).
GET_ROUTES = re.compile(rf"{COMPATIBLE}/models(/[^/]+)?")
