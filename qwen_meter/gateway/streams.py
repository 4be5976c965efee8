"""Readers that follow a server-sent-event stream as it is relayed, chunk by chunk.

Each reader's ``feed`` returns the bytes to pass on at once (never waiting for the stream's
end) and keeps what metering needs: the usage, the reply so far (to estimate a stream that
ends without usage), the served model and the request id. Only the compatible-mode reader
ever withholds anything: the usage-only chunk the gateway asked for on the client's behalf.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

# The client meter's compatible-mode reader: one SSE parser for the adapter and the gateway.
from ..clients.dashscope import add_reply, output_finish, output_reply
from ..clients.httpx_streams import CompatibleReply as CompatibleStream

__all__ = ["CompatibleStream", "NativeStream", "ResponsesStream", "StreamReader", "native_reply"]


class StreamReader(Protocol):
    usage: Any
    model: str | None
    request_id: str | None

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def message(self) -> dict[str, Any]: ...


class _Events:
    """Passes bytes through untouched and parses whole events from a side buffer."""

    def __init__(self) -> None:
        self.usage: Any = None
        self.model: str | None = None
        self.request_id: str | None = None
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        self._buffer += data.replace(b"\r\n", b"\n")
        while True:
            cut = self._buffer.find(b"\n\n")
            if cut < 0:
                break
            event, self._buffer = self._buffer[:cut], self._buffer[cut + 2:]
            self._event(event)
        return data

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        if rest.strip():
            self._event(rest)
        return b""

    def _event(self, event: bytes) -> None:
        payload = b"".join(line[5:].lstrip() for line in event.split(b"\n")
                           if line.startswith(b"data:"))
        if not payload or payload == b"[DONE]":
            return
        try:
            data = json.loads(payload)
        except ValueError:
            return
        if isinstance(data, dict):
            self.take(data)

    def take(self, data: dict[str, Any]) -> None:
        raise NotImplementedError


class NativeStream(_Events):
    """A native DashScope stream: cumulative usage in every event; text incremental or not."""

    def __init__(self, incremental: bool) -> None:
        super().__init__()
        self.incremental = incremental
        self.content = ""
        self.reasoning = ""
        self.error: str | None = None
        self.finish_reason: str | None = None

    def take(self, data: dict[str, Any]) -> None:
        self.request_id = data.get("request_id") or self.request_id
        if data.get("code") and "output" not in data:
            self.error = str(data.get("message") or data["code"])
            return
        usage = data.get("usage")
        if isinstance(usage, dict) and "input_tokens" in usage:
            self.usage = usage
        output = data.get("output") or {}
        self.finish_reason = output_finish(output) or self.finish_reason
        self.content, self.reasoning = add_reply(self.content, self.reasoning,
                                                 output_reply(output), self.incremental)

    def message(self) -> dict[str, Any]:
        return {"content": self.content, "reasoning_content": self.reasoning or None}


def native_reply(output: Any) -> tuple[str, str]:
    """(text, reasoning) of a native ``output`` (see :func:`~qwen_meter.clients.dashscope.
    output_reply`, which the metered dashscope SDK reads replies with too)."""
    reply = output_reply(output)
    return reply.get("content") or "", reply.get("reasoning_content") or ""


class ResponsesStream(_Events):
    """A Responses-API stream: text deltas, usage in ``response.completed``."""

    def __init__(self) -> None:
        super().__init__()
        self.content: list[str] = []
        self.ended = False

    def take(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "response.output_text.delta":
            self.content.append(str(data.get("delta") or ""))
        if kind in ("response.completed", "response.incomplete", "response.failed"):
            self.ended = True
        response = data.get("response")
        if isinstance(response, dict):
            self.model = response.get("model") or self.model
            self.request_id = response.get("id") or self.request_id
            if isinstance(response.get("usage"), dict):
                self.usage = response["usage"]

    def message(self) -> dict[str, Any]:
        return {"content": "".join(self.content)}
