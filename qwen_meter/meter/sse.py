"""An incremental server-sent-events decoder that follows the HTML spec's event-stream rules.

Lines end with CRLF, LF or a lone CR (a CR at the end of a chunk waits for the next chunk, in
case an LF follows); lines starting with ``:`` are comments; ``data`` lines of one event are
joined with ``\\n``; one space after the colon is dropped; a blank line dispatches the event.

Each event comes back with the exact bytes it occupied in the stream, so a metering proxy can
pass the stream through byte for byte and hide one event (the usage-only chunk it asked for).
``httpx-sse`` was evaluated: its ``SSEDecoder`` takes lines already split and its iterators
consume the response, so it gives neither the raw byte spans nor chunk-by-chunk feeding this
needs; the decoder below is small and self-contained instead.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SSEEvent:
    """One dispatched event: ``raw`` is its bytes in the stream (blank line included)."""

    raw: bytes
    data: str | None = None
    event: str | None = None
    id: str | None = None


class SSEDecoder:
    """Feed bytes as they arrive; get whole events back."""

    def __init__(self) -> None:
        self._buffer = b""
        self._scan = 0  # where the next line starts, inside _buffer
        self._data: list[str] = []
        self._event: str | None = None
        self._id: str | None = None

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """The events completed by ``chunk``."""
        return self._run(self._buffer + chunk, final=False)

    def flush(self) -> tuple[list[SSEEvent], bytes]:
        """At the end of the stream: the bytes still buffered (to pass on unchanged) and any
        event they hold. An event cut off before its blank line is one the spec discards; it
        is read here anyway (leniently, for metering only) so a final usage chunk is not lost."""
        rest = self._buffer
        events = [e for e in self._run(rest, final=True) if e.data is not None]
        if self._data:
            events.append(SSEEvent(b"", "\n".join(self._data), self._event, self._id))
        self._buffer, self._scan = b"", 0
        self._data, self._event, self._id = [], None, None
        return events, rest

    def _run(self, buffer: bytes, *, final: bool) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        start = 0  # where the current event's bytes begin
        pos = self._scan
        while True:
            lf = buffer.find(b"\n", pos)
            cr = buffer.find(b"\r", pos, lf if lf >= 0 else len(buffer))
            end = cr if cr >= 0 else lf
            if end < 0:
                break
            if cr >= 0:
                if cr + 1 == len(buffer) and not final:
                    break  # CR at the chunk's edge: it may be the first half of a CRLF
                after = cr + 2 if buffer[cr + 1:cr + 2] == b"\n" else cr + 1
            else:
                after = lf + 1
            line = buffer[pos:end]
            pos = after
            if line:
                self._field(line)
                continue
            if self._data or self._event is not None or self._id is not None:
                events.append(SSEEvent(buffer[start:pos], "\n".join(self._data)
                                       if self._data else None, self._event, self._id))
            else:  # a blank line after comments only: no event, but keep the bytes flowing
                events.append(SSEEvent(buffer[start:pos]))
            start = pos
            self._data, self._event, self._id = [], None, None
        if final:
            if pos < len(buffer):
                self._field(buffer[pos:])  # a last line with no line ending
        else:
            self._buffer, self._scan = buffer[start:], pos - start
        return events

    def _field(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace")
        if text.startswith(":"):
            return  # a comment
        name, colon, value = text.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._id = value
