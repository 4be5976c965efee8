"""The gateway's compatible-mode stream reader: bytes at line rate, metering read once."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st

from qwen_meter.clients.httpx_streams import CompatibleReply
from qwen_meter.gateway.streams import CompatibleStream

USAGE = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}


def _event(data: dict, crlf: bool = False) -> bytes:
    line = f"data: {json.dumps(data, ensure_ascii=False)}\n\n"
    return (line.replace("\n", "\r\n") if crlf else line).encode()


def _stream(crlf: bool = False, usage: bool = True) -> tuple[bytes, bytes]:
    """(upstream bytes, what a client that did not ask for usage sees)."""
    body = b"".join(_event({"id": "c7", "model": "qwen-plus-2025", "usage": None,
                            "choices": [{"index": 0, "delta": {"content": piece},
                                         "finish_reason": None}]}, crlf)
                    for piece in ("我是", "通义", "千问"))
    body += _event({"id": "c7", "model": "qwen-plus-2025", "usage": None,
                    "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, crlf)
    last = _event({"id": "c7", "model": "qwen-plus-2025", "choices": [], "usage": USAGE}, crlf)
    done = b"data: [DONE]\r\n\r\n" if crlf else b"data: [DONE]\n\n"
    return body + (last if usage else b"") + done, body + done


def _relay(reader: CompatibleStream, data: bytes, cuts: list[int]) -> bytes:
    out, at = [], 0
    for cut in [*cuts, len(data)]:
        out.append(reader.feed(data[at:at + cut]))
        at += cut
    out.append(reader.flush())
    return b"".join(out)


@given(st.lists(st.integers(min_value=1, max_value=50), max_size=40), st.booleans(),
       st.booleans())
def test_reader_agrees_with_the_event_reader(cuts, hide, crlf):
    upstream, hidden = _stream(crlf)
    reader = CompatibleStream(hide_usage_chunk=hide)
    assert _relay(reader, upstream, cuts) == (hidden if hide else upstream)
    exact = CompatibleReply(hide_usage_chunk=False)
    exact.feed(upstream)
    exact.flush()
    assert (reader.usage, reader.model, reader.request_id) == \
        (exact.usage, exact.model, exact.request_id) == (USAGE, "qwen-plus-2025", "c7")
    assert dict(reader.message()) == exact.message()


def test_each_chunk_passes_at_once_unparsed(monkeypatch):
    """Without a usage chunk to hide, every chunk goes on as it came and no event is decoded
    until metering asks; the reply is read only when asked for (no usage to bill from)."""
    decoded: list[object] = []
    original = CompatibleReply._take
    monkeypatch.setattr(CompatibleReply, "_take",
                        lambda self, event: decoded.append(event) or original(self, event))
    upstream, _ = _stream()
    reader = CompatibleStream(hide_usage_chunk=False)
    for i in range(0, len(upstream), 17):
        assert reader.feed(upstream[i:i + 17]) == upstream[i:i + 17]
    assert reader.flush() == b""
    assert decoded == []
    assert reader.usage == USAGE
    assert len(decoded) == 2  # the usage chunk and [DONE]: only the stream's tail
    reply = reader.message()
    assert len(decoded) == 2
    assert reply["content"] == "我是通义千问"


def test_stream_without_usage_still_names_model_and_reply():
    upstream, _ = _stream(usage=False)
    reader = CompatibleStream(hide_usage_chunk=True)
    assert _relay(reader, upstream, [5, 40, 3]) == upstream
    assert reader.usage is None
    assert (reader.model, reader.request_id) == ("qwen-plus-2025", "c7")
    assert reader.message()["content"] == "我是通义千问"


def test_hidden_usage_chunk_is_decoded_once(monkeypatch):
    """Hiding the usage chunk it asked for reads the stream's tail while relaying (one JSON
    decode: the usage chunk); settling takes usage, model and id from that reading and decodes
    nothing again."""
    decoded: list[object] = []
    loads = json.loads
    monkeypatch.setattr(json, "loads", lambda text, **kw: decoded.append(text) or loads(text))
    upstream, hidden = _stream()
    reader = CompatibleStream(hide_usage_chunk=True)
    assert _relay(reader, upstream, [len(upstream) - 30, 7]) == hidden
    assert len(decoded) == 1 and "usage" in decoded[0]
    assert (reader.usage, reader.model, reader.request_id) == (USAGE, "qwen-plus-2025", "c7")
    assert len(decoded) == 1


@given(st.lists(st.integers(min_value=1, max_value=50), max_size=40),
       st.sampled_from([b": ping\n\n", b"event: x\ndata: {\"id\": \"c8\"}\n\n",
                        b"data: {\"id\": \"c9\",\ndata: \"model\": \"m2\"}\n\n", b"\n\n",
                        b"data: {\"type\": \"x\", \"response\": {\"id\": \"r\"}}\n\n",
                        b"data: {\"id\": \"c10\"}\r\n\r\n", b"data: {\"id\": \"c11\"}"]))
def test_unusual_tail_is_read_as_the_event_reader_reads_it(cuts, extra):
    """After the usage chunk: a comment, other fields, a multi-line event, a blank line, a
    Responses event, CR line ends, an event cut off at the end — passed and read exactly as
    the event-by-event reader does."""
    upstream, _ = _stream()
    done = b"data: [DONE]\n\n"
    upstream = upstream[:-len(done)] + extra + done
    reader = CompatibleStream(hide_usage_chunk=True)
    out = _relay(reader, upstream, cuts)
    exact = CompatibleReply(hide_usage_chunk=True)
    assert out == exact.feed(upstream) + exact.flush()
    assert (reader.usage, reader.model, reader.request_id) == \
        (exact.usage, exact.model, exact.request_id)


def _prepared(raw: bytes) -> tuple[bytes, bool]:
    from qwen_meter.gateway.routes import ROUTES

    route = ROUTES["/compatible-mode/v1/chat/completions"]
    prepared = route.prepare(json.loads(raw), raw, {})
    return prepared.body, prepared.hide_usage


def test_usage_is_asked_for_in_the_clients_own_bytes():
    raw = '{ "model": "qwen-plus", "stream": true,\n "messages": [{"role": "user", ' \
          '"content": "你好 \\u4f60"}] }\n'.encode()
    body, hide = _prepared(raw)
    assert hide
    assert body == raw.rstrip()[:-1] + b',"stream_options":{"include_usage":true}}'
    assert json.loads(body) == {**json.loads(raw), "stream_options": {"include_usage": True}}
    # stream_options without include_usage: merged, the client's other options kept
    body, hide = _prepared(b'{"model":"m","stream":true,"stream_options":{"x":1}}')
    assert hide and json.loads(body)["stream_options"] == {"x": 1, "include_usage": True}
    body, hide = _prepared(b'{"model":"m","stream":true,"stream_options":null}')
    assert hide and json.loads(body)["stream_options"] == {"include_usage": True}
    # asked for by the client, or not a stream: the bytes go as they came
    for raw in (b'{"model":"m","stream":true,"stream_options":{"include_usage":true}}',
                b'{"model":"m","stream":false}'):
        assert _prepared(raw) == (raw, False)
