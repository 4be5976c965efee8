"""Metering at the HTTP layer: an httpx (or httpx2) transport for any OpenAI-compatible client.

:class:`MeteredTransport` (and :class:`AsyncMeteredTransport`) sit between an httpx client and
its real transport — the user's own, kept with its proxy and TLS settings. For ``POST``
``…/chat/completions``, ``…/completions``, ``…/responses`` and ``…/embeddings`` they read the
JSON body, run the meter's pipeline, send (retrying what DashScope says can be retried), and read
the answer: JSON, or a server-sent-event stream passed through byte for byte. When a chat stream
did not ask for usage they ask for it (``stream_options.include_usage``) and hide the extra
usage-only chunk, so the caller sees exactly the stream it would have seen. Everything else
passes through untouched; the client raises its own exceptions, unchanged.

The region of a call is the request URL's (``dashscope-intl.aliyuncs.com`` → intl) unless the
meter names one.

Retries compose with the client's: the meter retries DashScope's answers (429 / 5xx as
classified), and marks the answer it finally gives up on with ``x-should-retry: false``, which
the openai SDK (and LangChain through it) obeys, so attempts do not multiply. Connection errors
are the client's to retry (its ``max_retries`` is kept); each attempt that never got an answer
is recorded as an ``error`` with nothing billed. ``Meter(retry=RetryPolicy(max_retries=0))``
leaves every retry to the client.

Both ``httpx`` and ``httpx2`` (openai 3.x's default) are supported: :func:`transports` builds
the two classes for either module.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from functools import cache
from typing import Any

import httpx

from ..meter.call import MeteredCall
from ..meter.pipeline import Meter
from ..meter.server_errors import DashScopeError, classify
from ..meter.sse import SSEDecoder, SSEEvent

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
                "request_id": self.request_id, "status": status}


class _Stream:
    """The sync and async byte streams share this: feed, end, settle once."""

    def __init__(self, call: MeteredCall, reply: CompatibleReply) -> None:
        self.call = call
        self.reply = reply


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
        data = {}
    data = data if isinstance(data, dict) else {}
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
            "reply": reply, "http_status": response.status_code}


def _final(response: Any, call: MeteredCall) -> Any:
    """The error answer the meter gives up on, marked so the client does not retry it."""
    if call.meter.retry.max_retries > 0:  # else retries are left to the client
        response.headers["x-should-retry"] = "false"
    return response


@cache
def transports(hx: Any) -> tuple[type, type]:
    """(MeteredTransport, AsyncMeteredTransport) for the httpx-like module ``hx``."""

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
            except Exception:
                call.finish(**reply.outcome("dropped"))
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
            except Exception:
                await call.finish_async(**reply.outcome("dropped"))
                raise
            await call.finish_async(**reply.outcome("ok" if reply.finished else "incomplete"))
            if tail:
                yield tail

        async def aclose(self) -> None:
            try:
                await self.inner.aclose()
            finally:
                await self.state.call.finish_async(**self.state.reply.outcome("closed"))

    def wrap_stream(cls: type, call: MeteredCall, inject: bool, request: Any,
                    response: Any) -> Any:
        state = _Stream(call, CompatibleReply(hide_usage_chunk=inject))
        return hx.Response(response.status_code, headers=response.headers,
                           stream=cls(response.stream, state), request=request,
                           extensions=response.extensions)

    class MeteredTransport(hx.BaseTransport):  # type: ignore[misc]
        """Meters OpenAI-compatible calls made through an httpx client (sync)."""

        def __init__(self, meter: Meter, inner: Any = None) -> None:
            self.meter = meter
            self.inner = inner if inner is not None else hx.HTTPTransport()

        def handle_request(self, request: Any) -> Any:
            prepared = _prepare_body(request)
            if prepared is None:
                return self.inner.handle_request(request)
            endpoint, body, metered = prepared
            call = self.meter.begin(metered, endpoint=endpoint, url=request.url)
            inject = False
            if endpoint == "chat":
                request, inject = _with_usage(hx, request, body)
            while True:
                try:
                    response = self.inner.handle_request(request)
                except Exception as exc:
                    call.fail(exc)
                    raise
                if response.status_code >= 400:
                    response.read()
                    delay = call.next_attempt(_error(response),
                                              http_status=response.status_code)
                    if delay is None:
                        return _final(response, call)
                    response.close()
                    self.meter.retry.sleep(delay)
                    call.retry()
                    continue
                if _is_stream(response):
                    return wrap_stream(MeteredStream, call, inject, request, response)
                try:
                    response.read()
                except Exception:
                    call.finish(None, status="dropped", http_status=response.status_code)
                    raise
                call.finish(**_json_outcome(endpoint, response))
                return response

        def close(self) -> None:
            self.inner.close()

    class AsyncMeteredTransport(hx.AsyncBaseTransport):  # type: ignore[misc]
        """Meters OpenAI-compatible calls made through an httpx client (async)."""

        def __init__(self, meter: Meter, inner: Any = None) -> None:
            self.meter = meter
            self.inner = inner if inner is not None else hx.AsyncHTTPTransport()

        async def handle_async_request(self, request: Any) -> Any:
            import asyncio

            prepared = _prepare_body(request)
            if prepared is None:
                return await self.inner.handle_async_request(request)
            endpoint, body, metered = prepared
            call = await self.meter.begin_async(metered, endpoint=endpoint, url=request.url)
            inject = False
            if endpoint == "chat":
                request, inject = _with_usage(hx, request, body)
            while True:
                try:
                    response = await self.inner.handle_async_request(request)
                except Exception as exc:
                    await call.fail_async(exc)
                    raise
                if response.status_code >= 400:
                    await response.aread()
                    delay = await call.next_attempt_async(_error(response),
                                                          http_status=response.status_code)
                    if delay is None:
                        return _final(response, call)
                    await response.aclose()
                    await asyncio.sleep(delay)
                    await call.retry_async()
                    continue
                if _is_stream(response):
                    return wrap_stream(AsyncMeteredStream, call, inject, request, response)
                try:
                    await response.aread()
                except Exception:
                    await call.finish_async(None, status="dropped",
                                            http_status=response.status_code)
                    raise
                await call.finish_async(**_json_outcome(endpoint, response))
                return response

        async def aclose(self) -> None:
            await self.inner.aclose()

    return MeteredTransport, AsyncMeteredTransport


MeteredTransport, AsyncMeteredTransport = transports(httpx)


def _module_of(client: Any) -> Any:
    """httpx or httpx2, whichever ``client`` (or transport) belongs to."""
    if type(client).__module__.split(".")[0] == "httpx2" or any(
            c.__module__.split(".")[0] == "httpx2" for c in type(client).__mro__):
        import httpx2

        return httpx2
    return httpx


def metered_client(meter: Meter, **kwargs: Any) -> httpx.Client:
    """An ``httpx.Client`` whose OpenAI-compatible calls are metered."""
    inner = kwargs.pop("transport", None)
    return httpx.Client(transport=MeteredTransport(meter, inner), **kwargs)


def metered_async_client(meter: Meter, **kwargs: Any) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose OpenAI-compatible calls are metered."""
    inner = kwargs.pop("transport", None)
    return httpx.AsyncClient(transport=AsyncMeteredTransport(meter, inner), **kwargs)


def rewrap(meter: Meter, client: Any) -> Any:
    """A metered copy of an httpx / httpx2 client: same module, base URL, headers, auth,
    cookies, timeout, redirects and event hooks; its transport and mounts (proxy, TLS
    settings) kept underneath the meter. Raises :class:`~qwen_meter.meter.UnsupportedClient`
    when the client's transport cannot be reached (rather than dropping it silently)."""
    from ..meter.pipeline import UnsupportedClient

    hx = _module_of(client)
    sync_cls, async_cls = transports(hx)
    is_async = isinstance(client, hx.AsyncClient)
    inner = getattr(client, "_transport", None)
    mounts = getattr(client, "_mounts", None)
    if inner is None or mounts is None:
        raise UnsupportedClient(
            f"cannot reach the transport of this {type(client).__name__}; pass "
            "meter.httpx_client(transport=your_transport) as the SDK's http_client instead")
    cls = async_cls if is_async else sync_cls
    metered_mounts = {pattern.pattern: (None if t is None else cls(meter, t))
                      for pattern, t in mounts.items()}
    base = hx.AsyncClient if is_async else hx.Client
    return base(transport=cls(meter, inner), mounts=metered_mounts, base_url=client.base_url,
                headers=client.headers, cookies=client.cookies, auth=client.auth,
                timeout=client.timeout, follow_redirects=client.follow_redirects,
                max_redirects=client.max_redirects, event_hooks=client.event_hooks,
                trust_env=False)  # proxies from the environment are in the mounts already


def wrap_httpx(meter: Meter, client: Any) -> Any:
    """A metered httpx / httpx2 client with the same settings and transport as ``client``."""
    return rewrap(meter, client)
