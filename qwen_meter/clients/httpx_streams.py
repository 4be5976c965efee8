"""Streamed answers through the httpx transport: followed event by event, passed on unchanged.

:class:`CompatibleReply` reads a server-sent-event stream (content, reasoning, tool calls,
usage) and hides the usage-only chunk the meter asked for; :func:`stream_classes` builds the
sync and async byte streams that settle the call when the stream ends, for the httpx-like
module given; :func:`wrap_stream` puts one in a response.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from functools import cache
from typing import Any

from ..meter.call import MeteredCall
from ..meter.sse import SSEDecoder, SSEEvent


class CompatibleReply:
    """Follows a streamed reply (content, reasoning, tool calls, usage) event by event."""

    def __init__(self, hide_usage_chunk: bool) -> None:
        self.hide = hide_usage_chunk
        self.decoder = SSEDecoder()
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.model: str | None = None
        self.request_id: str | None = None
        self.finished = False  # a finish_reason (or response.completed) was seen
        self.reasons: dict[int, str] = {}  # choice index -> its finish_reason

    def feed(self, data: bytes) -> bytes:
        """The bytes to pass on (whole events; the hidden usage chunk left out)."""
        return b"".join(event.raw for event in self.decoder.feed(data) if self._take(event))

    def flush(self) -> bytes:
        events, rest = self.decoder.flush()
        for event in events:
            self._take(event)  # a last event without its blank line still counts
        return rest

    def _take(self, event: SSEEvent) -> bool:
        """Read one event; False if it must not reach the caller."""
        if not event.data or event.data == "[DONE]":
            return True
        try:
            chunk = json.loads(event.data)
        except ValueError:
            return True
        if not isinstance(chunk, dict):
            return True
        if isinstance(chunk.get("response"), dict):  # Responses API events
            response = chunk["response"]
            self.model = response.get("model") or self.model
            self.request_id = response.get("id") or self.request_id
            if response.get("usage"):
                self.usage = response["usage"]
            if chunk.get("type") in ("response.completed", "response.incomplete"):
                self.finished = True
            return True
        if chunk.get("type") == "response.output_text.delta":
            self.content.append(str(chunk.get("delta") or ""))
            return True
        self.model = chunk.get("model") or self.model
        self.request_id = chunk.get("id") or self.request_id
        choices = chunk.get("choices") or []
        for choice in choices:
            if isinstance(choice, dict) and isinstance(choice.get("finish_reason"), str):
                index = choice.get("index")
                self.reasons[index if isinstance(index, int) else 0] = choice["finish_reason"]
        for choice in choices[:1]:
            if choice.get("finish_reason"):
                self.finished = True
            delta = choice.get("delta") or {}
            if isinstance(choice.get("text"), str):  # /completions
                self.content.append(choice["text"])
            if delta.get("content"):
                self.content.append(delta["content"])
            if delta.get("reasoning_content"):
                self.reasoning.append(delta["reasoning_content"])
            for call in delta.get("tool_calls") or []:
                slot = self.tool_calls.setdefault(call.get("index", 0),
                                                  {"name": "", "arguments": ""})
                function = call.get("function") or {}
                slot["name"] += function.get("name") or ""
                slot["arguments"] += function.get("arguments") or ""
        if chunk.get("usage"):
            self.usage = chunk["usage"]
            if self.hide and not choices:
                return False
        return True

    def message(self) -> dict[str, Any]:
        return {"content": "".join(self.content),
                "reasoning_content": "".join(self.reasoning) or None,
                "tool_calls": [{"function": c} for _, c in sorted(self.tool_calls.items())]
                or None}

    def outcome(self, status: str) -> dict[str, Any]:
        """finish() arguments for a stream that ended with ``status``."""
        if self.usage is not None:
            # The server's usage arrived (SDKs close the stream at [DONE], after it): the call
            # is fully known, and complete if the answer had its finish_reason.
            status = "ok" if self.finished else "incomplete"
        elif status == "ok":
            status = "incomplete"
        return {"usage": self.usage, "reply": self.message(), "served_model": self.model,
                "request_id": self.request_id, "status": status,
                "finish_reasons": tuple(r for _, r in sorted(self.reasons.items()))}


class _Stream:
    """The sync and async byte streams share this: feed, end, settle once."""

    def __init__(self, call: MeteredCall, reply: CompatibleReply) -> None:
        self.call = call
        self.reply = reply


@cache
def stream_classes(hx: Any) -> tuple[type, type]:
    """(MeteredStream, AsyncMeteredStream) for the httpx-like module ``hx``."""

    class MeteredStream(hx.SyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, state: _Stream) -> None:
            self.inner = inner
            self.state = state

        def __iter__(self) -> Iterator[bytes]:
            reply, call = self.state.reply, self.state.call
            try:
                for data in self.inner:
                    out = reply.feed(data)
                    if out:
                        yield out
                tail = reply.flush()
            except GeneratorExit:  # closed unfinished (the response's close, or collected)
                call.finish(**reply.outcome("closed"))
                raise
            except BaseException as exc:  # Ctrl-C: charged with what was seen, not lost
                _settle(call, reply, exc)
                raise
            call.finish(**reply.outcome("ok" if reply.finished else "incomplete"))
            if tail:
                yield tail

        def close(self) -> None:
            try:
                self.inner.close()
            finally:
                self.state.call.finish(**self.state.reply.outcome("closed"))

    class AsyncMeteredStream(hx.AsyncByteStream):  # type: ignore[misc]
        def __init__(self, inner: Any, state: _Stream) -> None:
            self.inner = inner
            self.state = state

        async def __aiter__(self) -> AsyncIterator[bytes]:
            reply, call = self.state.reply, self.state.call
            try:
                async for data in self.inner:
                    out = reply.feed(data)
                    if out:
                        yield out
                tail = reply.flush()
            except GeneratorExit:  # aclose() unfinished, or the loop finalising it
                await call.finish_async(**reply.outcome("closed"))
                raise
            except BaseException as exc:  # CancelledError is not an Exception
                if isinstance(exc, Exception) or reply.usage is not None:
                    await call.finish_async(**reply.outcome("dropped"))
                else:
                    await call.interrupted_async(exc, "stream", **reply.outcome("cancelled"))
                raise
            await call.finish_async(**reply.outcome("ok" if reply.finished else "incomplete"))
            if tail:
                yield tail

        async def aclose(self) -> None:
            try:
                await self.inner.aclose()
            finally:
                await self.state.call.finish_async(**self.state.reply.outcome("closed"))

    return MeteredStream, AsyncMeteredStream


def _settle(call: MeteredCall, reply: CompatibleReply, exc: BaseException) -> None:
    if isinstance(exc, Exception) or reply.usage is not None:
        call.finish(**reply.outcome("dropped"))
    else:
        call.interrupted(exc, "stream", **reply.outcome("cancelled"))


def wrap_stream(hx: Any, cls: type, call: MeteredCall, inject: bool, request: Any,
                response: Any) -> Any:
    state = _Stream(call, CompatibleReply(hide_usage_chunk=inject))
    stream = cls(response.stream, state)
    reply = state.reply
    call.meter.streams.add(stream, call, lambda: reply.outcome("closed"))
    return hx.Response(response.status_code, headers=response.headers, stream=stream,
                       request=request, extensions=response.extensions)
