"""Metering at the HTTP layer: an httpx transport for any OpenAI-compatible client.

:class:`MeteredTransport` (and :class:`AsyncMeteredTransport`) sit between an httpx client and
its real transport. For ``POST …/chat/completions`` and ``…/embeddings`` they read the JSON
body, run the meter's pipeline, send (retrying what DashScope says can be retried), and read
the answer: JSON, or a server-sent-event stream that they pass through chunk by chunk. When a
stream did not ask for usage they ask for it (``stream_options.include_usage``) and hide the
extra usage-only chunk, so the caller sees exactly the stream it would have seen. Everything
else passes through untouched. The client raises its own exceptions, unchanged.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx

from ..meter import Meter, MeteredCall
from ..server_errors import DashScopeError, classify

_ENDPOINTS = (("/chat/completions", "chat"), ("/embeddings", "embeddings"))


def _endpoint(request: httpx.Request) -> str | None:
    if request.method != "POST":
        return None
    path = request.url.path.rstrip("/")
    return next((name for suffix, name in _ENDPOINTS if path.endswith(suffix)), None)


class _Reply:
    """Accumulates a streamed reply (content, reasoning, tool calls) and its usage."""

    def __init__(self, hide_usage_chunk: bool) -> None:
        self.hide = hide_usage_chunk
        self.content: list[str] = []
        self.reasoning: list[str] = []
        self.tool_calls: dict[int, dict[str, Any]] = {}
        self.usage: Any = None
        self.model: str | None = None
        self.request_id: str | None = None
        self._buffer = b""

    def feed(self, data: bytes) -> bytes:
        """Pass-through bytes for the caller (events split across reads are kept whole)."""
        self._buffer += data
        out = []
        while True:
            cut = self._buffer.find(b"\n\n")
            if cut < 0:
                break
            event, self._buffer = self._buffer[:cut + 2], self._buffer[cut + 2:]
            if self._take(event):
                out.append(event)
        return b"".join(out)

    def flush(self) -> bytes:
        rest, self._buffer = self._buffer, b""
        if rest.strip() and not self._take(rest):
            return b""
        return rest

    def _take(self, event: bytes) -> bool:
        """Read one event; False if it must not reach the caller."""
        payload = b"".join(line[5:].lstrip() for line in event.splitlines()
                           if line.startswith(b"data:"))
        if not payload or payload == b"[DONE]":
            return True
        try:
            chunk = json.loads(payload)
        except ValueError:
            return True
        if not isinstance(chunk, dict):
            return True
        self.model = chunk.get("model") or self.model
        self.request_id = chunk.get("id") or self.request_id
        choices = chunk.get("choices") or []
        for choice in choices[:1]:
            delta = choice.get("delta") or {}
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


class _Settle:
    """Settles a streamed call exactly once: at the end, on an error, or on an early close."""

    def __init__(self, call: MeteredCall, reply: _Reply) -> None:
        self.call = call
        self.reply = reply

    def end(self) -> bytes:
        """The stream ran to its end: settle, and return what was still buffered."""
        tail = self.reply.flush()
        self.done("ok" if self.reply.usage is not None else "incomplete")
        return tail

    def done(self, status: str = "ok") -> None:
        if self.call.settled:
            return
        reply = self.reply
        if status != "ok" and reply.usage is None:
            self.call.finish(None, reply=reply.message(), served_model=reply.model,
                             request_id=reply.request_id, status=status)
        else:
            self.call.finish(reply.usage, reply=reply.message(), served_model=reply.model,
                             request_id=reply.request_id,
                             status=status if reply.usage is None else "ok")


class _MeteredStream(httpx.SyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream, settle: _Settle) -> None:
        self.inner = inner
        self.settle = settle

    def __iter__(self) -> Iterator[bytes]:
        reply = self.settle.reply
        try:
            for data in self.inner:
                out = reply.feed(data)
                if out:
                    yield out
            tail = self.settle.end()
            if tail:
                yield tail
        except Exception:
            self.settle.done("dropped")
            raise

    def close(self) -> None:
        try:
            self.inner.close()
        finally:
            self.settle.done("closed")


class _AsyncMeteredStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, settle: _Settle) -> None:
        self.inner = inner
        self.settle = settle

    async def __aiter__(self) -> AsyncIterator[bytes]:
        reply = self.settle.reply
        try:
            async for data in self.inner:
                out = reply.feed(data)
                if out:
                    yield out
            tail = self.settle.end()
            if tail:
                yield tail
        except Exception:
            self.settle.done("dropped")
            raise

    async def aclose(self) -> None:
        try:
            await self.inner.aclose()
        finally:
            self.settle.done("closed")


def _prepare(meter: Meter, request: httpx.Request
             ) -> tuple[MeteredCall, httpx.Request, bool] | None:
    endpoint = _endpoint(request)
    if endpoint is None:
        return None
    try:
        body = json.loads(request.content or b"null")
    except (ValueError, httpx.RequestNotRead):
        return None
    if not isinstance(body, dict):
        return None
    call = meter.begin(body, endpoint=endpoint)
    inject = bool(endpoint == "chat" and body.get("stream")
                  and not (body.get("stream_options") or {}).get("include_usage"))
    if inject:
        body["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
        headers = httpx.Headers(request.headers)
        headers.pop("content-length", None)
        request = httpx.Request(request.method, request.url, headers=headers,
                                content=json.dumps(body, ensure_ascii=False).encode("utf-8"),
                                extensions=request.extensions)
    return call, request, inject


def _error(response: httpx.Response) -> DashScopeError:
    return classify(response.status_code, response.content, response.headers)


def _is_stream(response: httpx.Response) -> bool:
    return "text/event-stream" in response.headers.get("content-type", "")


def _finish_json(call: MeteredCall, response: httpx.Response) -> None:
    try:
        data = response.json()
    except ValueError:
        data = {}
    data = data if isinstance(data, dict) else {}
    choices = data.get("choices") or [{}]
    message = choices[0].get("message") if isinstance(choices[0], dict) else None
    call.finish(data.get("usage"), served_model=data.get("model"),
                request_id=data.get("id") or response.headers.get("x-request-id"),
                reply=message, http_status=response.status_code)


class MeteredTransport(httpx.BaseTransport):
    """Meters OpenAI-compatible calls made through an httpx client (sync)."""

    def __init__(self, meter: Meter, inner: httpx.BaseTransport | None = None) -> None:
        self.meter = meter
        self.inner = inner or httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        prepared = _prepare(self.meter, request)
        if prepared is None:
            return self.inner.handle_request(request)
        call, request, inject = prepared
        while True:
            try:
                response = self.inner.handle_request(request)
            except Exception as exc:
                call.fail(exc)
                raise
            if response.status_code >= 400:
                response.read()
                delay = call.next_attempt(_error(response), http_status=response.status_code)
                if delay is None:
                    return response
                response.close()
                self.meter.retry.sleep(delay)
                call.retry()
                continue
            if _is_stream(response):
                settle = _Settle(call, _Reply(hide_usage_chunk=inject))
                return httpx.Response(response.status_code, headers=response.headers,
                                      stream=_MeteredStream(response.stream, settle),  # type: ignore[arg-type]
                                      request=request, extensions=response.extensions)
            response.read()
            _finish_json(call, response)
            return response

    def close(self) -> None:
        self.inner.close()


class AsyncMeteredTransport(httpx.AsyncBaseTransport):
    """Meters OpenAI-compatible calls made through an httpx client (async)."""

    def __init__(self, meter: Meter, inner: httpx.AsyncBaseTransport | None = None) -> None:
        self.meter = meter
        self.inner = inner or httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        import asyncio

        prepared = _prepare(self.meter, request)
        if prepared is None:
            return await self.inner.handle_async_request(request)
        call, request, inject = prepared
        while True:
            try:
                response = await self.inner.handle_async_request(request)
            except Exception as exc:
                call.fail(exc)
                raise
            if response.status_code >= 400:
                await response.aread()
                delay = call.next_attempt(_error(response), http_status=response.status_code)
                if delay is None:
                    return response
                await response.aclose()
                await asyncio.sleep(delay)
                call.retry()
                continue
            if _is_stream(response):
                settle = _Settle(call, _Reply(hide_usage_chunk=inject))
                return httpx.Response(response.status_code, headers=response.headers,
                                      stream=_AsyncMeteredStream(response.stream, settle),  # type: ignore[arg-type]
                                      request=request, extensions=response.extensions)
            await response.aread()
            _finish_json(call, response)
            return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def metered_client(meter: Meter, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` whose OpenAI-compatible calls are metered."""
    inner = kwargs.pop("transport", None)
    return httpx.Client(transport=MeteredTransport(meter, inner), **kwargs)


def metered_async_client(meter: Meter, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose OpenAI-compatible calls are metered."""
    inner = kwargs.pop("transport", None)
    return httpx.AsyncClient(transport=AsyncMeteredTransport(meter, inner), **kwargs)


def wrap_httpx(meter: Meter, client: httpx.Client | httpx.AsyncClient) -> Any:
    """A metered httpx client with the same base URL, headers and timeout as ``client``."""
    inner = getattr(client, "_transport", None)
    options = {"base_url": client.base_url, "headers": client.headers,
               "timeout": client.timeout, "follow_redirects": client.follow_redirects}
    if isinstance(client, httpx.AsyncClient):
        return metered_async_client(meter, transport=inner, **options)
    return metered_client(meter, transport=inner, **options)
