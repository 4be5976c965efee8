"""Readers that follow a server-sent-event stream as it is relayed, chunk by chunk.

Each reader's ``feed`` returns the bytes to pass on at once (never waiting for the stream's
end) and keeps what metering needs: the usage, the reply so far (to estimate a stream that
ends without usage), the served model and the request id. Only the compatible-mode reader
ever withholds anything: the usage-only chunk the gateway asked for on the client's behalf.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from ..clients.dashscope import add_reply, output_finish, output_reply

# The client meter's compatible-mode reader (event by event): what the gateway falls back to
# when the fast path below cannot be sure, and what reads a reply that is really needed.
from ..clients.httpx_streams import CompatibleReply

__all__ = ["CompatibleStream", "NativeStream", "ResponsesStream", "StreamReader", "native_reply"]


class StreamReader(Protocol):
    @property
    def usage(self) -> Any: ...

    @property
    def model(self) -> str | None: ...

    @property
    def request_id(self) -> str | None: ...

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...

    def message(self) -> Mapping[str, Any]: ...


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


# A usage that is an object (not null): the only events the gateway must read. Every other
# event passes as bytes, unparsed. (A quote inside a JSON string is escaped, so this cannot
# match a model's text.)
_USAGE = re.compile(rb'"usage"\s*:\s*\{')


class _Tail:
    """The end of a compatible-mode stream, from its first event with a usage object on (the
    usage chunk, then ``[DONE]``), read while it is relayed, the usage-only chunk withheld.

    One-line ``data:`` events with LF line ends (what DashScope sends) cost one ``json.loads``
    each here; anything else (a comment, another field, several lines, a CR) hands this event
    and the rest of the stream to the exact event reader, which carries on from the usage,
    model and id read so far (reading an event twice changes nothing: the last value wins).
    """

    def __init__(self) -> None:
        self._usage: Any = None
        self._model: str | None = None
        self._request_id: str | None = None
        self._carry = b""
        self._exact: CompatibleReply | None = None

    @property
    def usage(self) -> Any:
        return self._exact.usage if self._exact else self._usage

    @property
    def model(self) -> str | None:
        return self._exact.model if self._exact else self._model

    @property
    def request_id(self) -> str | None:
        return self._exact.request_id if self._exact else self._request_id

    def feed(self, data: bytes) -> bytes:
        if self._exact is not None:
            return self._exact.feed(data)
        buffer = self._carry + data if self._carry else data
        cut = buffer.rfind(b"\n\n") + 2
        if b"\r" in buffer:
            return self._hand_over(buffer)
        if cut < 2:
            self._carry = buffer
            return b""
        out = self._events(buffer[:cut])
        if out is None:
            return self._hand_over(buffer)
        self._carry = buffer[cut:]
        return out

    def flush(self) -> bytes:
        if self._exact is None and not self._carry.strip():
            rest, self._carry = self._carry, b""
            return rest
        if self._exact is None:  # a last event without its blank line: read leniently
            self._hand_over(self._carry)
        assert self._exact is not None
        return self._exact.flush()

    def _hand_over(self, buffer: bytes) -> bytes:
        """The exact reader from here on; ``buffer``: the bytes not passed on yet."""
        self._exact = exact = CompatibleReply(hide_usage_chunk=True)
        exact.usage, exact.model, exact.request_id = self._usage, self._model, self._request_id
        self._carry = b""
        return exact.feed(buffer)

    def _events(self, whole: bytes) -> bytes | None:
        """The events of ``whole`` to pass on, or None if one is not a plain data line."""
        out = []
        for event in whole.split(b"\n\n")[:-1]:
            if not event.startswith(b"data:") or b"\n" in event:
                return None
            payload = event[6:] if event[5:6] == b" " else event[5:]
            if payload and payload != b"[DONE]":
                try:
                    chunk = json.loads(payload.decode("utf-8", "replace"))
                except ValueError:
                    chunk = None
                if isinstance(chunk, dict):
                    if "response" in chunk or "type" in chunk:  # not a chat chunk
                        return None
                    self._model = chunk.get("model") or self._model
                    self._request_id = chunk.get("id") or self._request_id
                    if chunk.get("usage"):
                        self._usage = chunk["usage"]
                        if not chunk.get("choices"):
                            continue  # the usage-only chunk the gateway asked for
            out.append(event + b"\n\n")
        return b"".join(out)


class _LazyReply(Mapping[str, Any]):
    """The reply of a stream, read from its bytes only if the meter asks for it (it does when
    the stream brought no usable usage, to count the reply instead)."""

    def __init__(self, stream: CompatibleStream) -> None:
        self._stream = stream
        self._message: dict[str, Any] | None = None

    def _read(self) -> dict[str, Any]:
        if self._message is None:
            self._message = self._stream.exact().message()
        return self._message

    def __getitem__(self, key: str) -> Any:
        return self._read()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())


class CompatibleStream:
    """A compatible-mode (OpenAI-style) stream, relayed at line rate.

    Bytes pass through as they come; nothing is parsed per chunk. What metering needs is read
    once, at the end, from a side copy of the bytes: only the events that carry a usage object
    are decoded (the usage, served model and id are in that last chunk). The reply text is
    read only if the meter asks (no usable usage). When the gateway asked for the usage chunk
    on the client's behalf (``hide_usage_chunk``), whole events are passed and the usage-only
    event is withheld; a stream with CR line ends goes through the exact event reader.
    """

    def __init__(self, hide_usage_chunk: bool) -> None:
        self.hide = hide_usage_chunk
        self._kept: list[bytes] = []
        self._carry = b""  # hide mode: the start of an event not yet complete
        # Hide mode: the reader that follows the stream from an event boundary on: the event
        # reader after a CR was seen, or a :class:`_Tail` from the first event with a usage
        # object (``_tail``: it has read the events metering reads, which are then not
        # decoded twice).
        self._fallback: CompatibleReply | _Tail | None = None
        self._tail = False
        self._exact: CompatibleReply | None = None
        self._read = False
        self._usage: Any = None
        self._model: str | None = None
        self._request_id: str | None = None

    def feed(self, data: bytes) -> bytes:
        self._kept.append(data)
        self._read, self._exact = False, None
        if not self.hide:
            return data
        if self._fallback is not None:
            return self._fallback.feed(data)
        buffer = self._carry + data if self._carry else data
        if b"\r" in buffer:  # CR line ends: the exact reader, from this event boundary on
            self._fallback = CompatibleReply(hide_usage_chunk=True)
            self._carry = b""
            return self._fallback.feed(buffer)
        cut = buffer.rfind(b"\n\n") + 2
        if cut < 2:
            self._carry = buffer
            return b""
        whole, self._carry = buffer[:cut], buffer[cut:]
        found = _USAGE.search(whole)
        if found is None:
            return whole
        # The events before the one with the usage pass as they are; from it on the stream
        # goes through the tail reader, which drops the usage-only event (and keeps the
        # usage, model and id for settling).
        at = whole.rfind(b"\n\n", 0, found.start())
        before = at + 2 if at >= 0 else 0
        self._fallback, self._tail = _Tail(), True
        self._carry = b""
        return whole[:before] + self._fallback.feed(buffer[before:])

    def flush(self) -> bytes:
        if self._fallback is not None:
            return self._fallback.flush()
        rest, self._carry = self._carry, b""
        return rest

    def exact(self) -> CompatibleReply:
        """Every event read, as the event-by-event reader reads them."""
        if self._exact is None:
            self._exact = CompatibleReply(hide_usage_chunk=False)
            self._exact.feed(b"".join(self._kept))
            self._exact.flush()
        return self._exact

    def _settle(self) -> None:
        if self._read:
            return
        self._read = True
        if self._tail and self._fallback is not None and self._fallback.usage is not None \
                and self._fallback.model is not None and self._fallback.request_id is not None:
            tail = self._fallback  # read once, while relaying (see ``feed``)
            self._usage, self._model, self._request_id = tail.usage, tail.model, tail.request_id
            return
        data = b"".join(self._kept)
        self._kept = [data] if data else []
        found = _USAGE.search(data)
        if found is None:  # no usage (yet): the model and id from the events themselves
            exact = self.exact() if data else None
            self._usage = None
            self._model = exact.model if exact else None
            self._request_id = exact.request_id if exact else None
            return
        # The events from the first one with a usage on: the usage chunk ends a stream.
        before = data.rfind(b"\n\n", 0, found.start())
        tail = CompatibleReply(hide_usage_chunk=False)
        tail.feed(data[before + 2:] if before >= 0 else data)
        tail.flush()
        if tail.model is None or tail.request_id is None:
            tail = self.exact()
        self._usage, self._model, self._request_id = tail.usage, tail.model, tail.request_id

    @property
    def usage(self) -> Any:
        self._settle()
        return self._usage

    @property
    def model(self) -> str | None:
        self._settle()
        return self._model

    @property
    def request_id(self) -> str | None:
        self._settle()
        return self._request_id

    def message(self) -> Mapping[str, Any]:
        return _LazyReply(self)


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
