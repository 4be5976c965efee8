"""The gateway as a plain ASGI application.

No web framework: a reverse proxy needs six exact paths, a body read with a size cap, a
response relayed chunk by chunk with the client's disconnect noticed while it streams — plain
ASGI does all of it with nothing between uvicorn and the relay on the hot path.

One request: find the route → check the virtual key → read the body (413 over the cap) →
parse it (400 with the position) → the meter's pre-flight, budgets and limiter, inside an
attribution block for the tenant → send upstream with the real key → relay the answer (JSON
whole, streams chunk by chunk) → settle the call with the usage it reported.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import aiohttp

from ..base.errors import (
    BudgetExceeded,
    InvalidMessages,
    LimitExceeded,
    NotOffered,
    QwenMeterError,
    RateLimited,
    UnknownModel,
)
from ..limits.store import StoreUnavailable
from ..meter.attribution import attribute
from ..meter.call import MeteredCall
from ..meter.server_errors import classify
from . import answers, metering
from .answers import Answer
from .config import GatewayConfig
from .keys import KeyTable, bearer
from .metrics import CONTENT_TYPE, GatewayMetrics
from .routes import ROUTES, Prepared, Route
from .tenants import Tenant, Tenants

log = logging.getLogger("qwen_meter.gateway")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus the ones the relay
# sets itself.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
        "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
        "accept-encoding", "content-encoding", "server", "date"}


class _TooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class UpstreamDropped(Exception):
    """The upstream closed a stream before its end; raised to drop the client's too."""


class Gateway:
    """``Gateway(config)`` is an ASGI app; see the module docs."""

    def __init__(self, config: GatewayConfig, *, log_path: str | None = None) -> None:
        self.config = config
        self.keys = KeyTable(config.keys)
        self.metrics = GatewayMetrics(lambda: self.tenants.budgets())
        self.tenants = Tenants(config, [self.metrics], log_path)
        # Real keys are read once, at start: a missing variable or file fails here.
        self.secrets = {name: up.api_key(config.file) for name, up in config.upstreams.items()}
        self._client: aiohttp.ClientSession | None = None
        self.ready = False

    # --- ASGI ------------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            await self._http(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.start()
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start(self) -> None:
        from ..billing.chat_counting import count_messages

        # Load the tokenizer now, not on the first client's time.
        count_messages([{"role": "user", "content": "hi"}], "qwen-plus")
        if self._client is None:
            # aiohttp for the upstream: its C parser costs a fraction of httpx's CPU per call.
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
                # A bound on the silence between reads, not on the whole call: a long
                # generation may stream for many minutes.
                timeout=aiohttp.ClientTimeout(total=None, connect=10,
                                              sock_read=self.config.timeout or None),
                auto_decompress=False, skip_auto_headers=("User-Agent",))
        self.ready = True

    async def aclose(self) -> None:
        """After the server stopped: every open stream has been settled by now."""
        self.ready = False
        if self._client is not None:
            await self._client.close()
            self._client = None
        self.tenants.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        method = scope["method"]
        if method == "GET" and path == "/healthz":
            status = 200 if self.ready else 503
            await _send_bytes(send, status, b'{"status":"ok"}' if self.ready
                              else b'{"status":"starting"}', b"application/json")
            return
        if method == "GET" and path == "/metrics":
            await _send_bytes(send, 200, self.metrics.render(), CONTENT_TYPE.encode())
            return
        route = ROUTES.get(path.rstrip("/"))
        native = route.native if route else path.startswith("/api/v1/")
        if route is None or method != "POST":
            await self._answer(send, answers.not_metered(path), native, None)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        tenant = self._tenant(headers)
        if tenant is None:
            await self._answer(send, answers.unauthorized(), native, None)
            return
        try:
            raw = await _read_body(receive, headers, self.config.max_body_bytes)
        except _TooLarge:
            await self._answer(send, answers.too_large(self.config.max_body_bytes), native,
                               tenant)
            return
        except _ClientGone:
            return
        # The relay runs as its own task so that a client hanging up cancels it (and with it
        # the upstream request) at once, even while nothing is being sent.
        tracked = _TrackedSend(send)
        work = asyncio.ensure_future(self._proxy(route, tenant, headers, raw,
                                                 scope.get("query_string", b""), tracked))
        watcher = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait({work, watcher}, return_when=asyncio.FIRST_COMPLETED)
            if not work.done() and tracked.complete:
                # The client has the whole answer and hung up: let the call settle.
                await asyncio.wait({work})
        except asyncio.CancelledError:  # the server gave up on us (shutdown timeout)
            work.cancel()
            raise
        finally:
            if not work.done():
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
            watcher.cancel()
        if not work.cancelled():
            work.result()  # re-raise a dropped upstream so the client sees the drop

    def _tenant(self, headers: dict[str, str]) -> Tenant | None:
        if not self.config.virtual_keys:
            return self.tenants.default
        key = self.keys.lookup(bearer(headers))
        return None if key is None else self.tenants.by_name.get(key.name)

    async def _answer(self, send: Send, answer: Answer, native: bool,
                      tenant: Tenant | None) -> None:
        self.metrics.refused(tenant.name if tenant else None, answer.kind)
        status, headers, body = answer.render(native)
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    # --- one proxied call -----------------------------------------------------------------------

    async def _proxy(self, route: Route, tenant: Tenant, headers: dict[str, str], raw: bytes,
                     query: bytes, send: Send) -> None:
        try:
            body = json.loads(raw)
        except ValueError as exc:
            await self._answer(send, answers.bad_json(str(exc)), route.native, tenant)
            return
        if not isinstance(body, dict):
            await self._answer(send, answers.bad_json(
                f"expected a JSON object, got {type(body).__name__}"), route.native, tenant)
            return
        if not tenant.allows(body.get("model")):
            await self._answer(send, answers.model_denied(str(body.get("model")),
                                                          tenant.name or "-"),
                               route.native, tenant)
            return
        prepared = route.prepare(body, raw, headers)
        with attribute(tags=tenant.tags, user=tenant.user,
                       metadata={"gateway": self.tenants.replica}):
            started = asyncio.get_running_loop().time()
            try:
                call = await metering.begin(tenant.meter, prepared.meter_request,
                                            endpoint=prepared.endpoint, user=tenant.user,
                                            inline=self.tenants.inline)
            except StoreUnavailable:  # before QwenMeterError, of which it is one
                await self._answer(send, answers.store_unavailable(), route.native, tenant)
                return
            except QwenMeterError as exc:
                await self._answer(send, _refusal(exc, tenant), route.native, tenant)
                return
            self.metrics.admission.observe(asyncio.get_running_loop().time() - started)
            await self._relay(route, tenant, headers, prepared, query, call, send)

    def _upstream(self, route: Route, tenant: Tenant, headers: dict[str, str],
                  query: bytes) -> tuple[str, list[tuple[str, str]]]:
        out = [(k, v) for k, v in headers.items() if k not in _HOP]
        secret = self.secrets.get(tenant.upstream.name)
        if secret is not None:
            out = [(k, v) for k, v in out if k not in ("authorization", "x-api-key")]
            out.append(("authorization", f"Bearer {secret}"))
        out.append(("accept-encoding", "identity"))  # relay and parse the same bytes
        url = tenant.upstream.url + route.path + (f"?{query.decode('latin-1')}" if query
                                                  else "")
        return url, out

    async def _relay(self, route: Route, tenant: Tenant, headers: dict[str, str],
                     prepared: Prepared, query: bytes, call: MeteredCall, send: Send) -> None:
        assert self._client is not None, "the gateway was not started"
        url, out = self._upstream(route, tenant, headers, query)
        try:
            response = await self._client.request("POST", url, data=prepared.body,
                                                  headers=out, allow_redirects=False)
        except asyncio.CancelledError:
            metering.settle_now(call, None, status="closed", http_status=None)
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            await metering.fail(call, exc, inline=self.tenants.inline)
            await self._answer(send, answers.upstream_failed(type(exc).__name__),
                               route.native, tenant)
            return
        try:
            if response.status >= 400:
                await self._relay_error(response, tenant, call, send)
            elif "text/event-stream" in response.headers.get("content-type", ""):
                await self._relay_stream(route, prepared, response, call, send)
            else:
                await self._relay_json(route, response, call, send)
        finally:
            # Closing (not releasing) an unfinished response drops the upstream connection:
            # that is what cancels the upstream request when the client has gone.
            if response.content.at_eof():
                response.release()
            else:
                response.close()

    async def _relay_error(self, response: aiohttp.ClientResponse, tenant: Tenant,
                           call: MeteredCall, send: Send) -> None:
        body = await response.read()
        secret = self.secrets.get(tenant.upstream.name)
        if secret and secret.encode() in body:  # never echo the real key to a tenant
            body = body.replace(secret.encode(), b"***")
        error = classify(response.status, body, response.headers)
        await _send_bytes(send, response.status, body, None, _relay_headers(response))
        await metering.fail(call, error, http_status=response.status,
                            request_id=response.headers.get("x-request-id"),
                            inline=self.tenants.inline)

    async def _relay_json(self, route: Route, response: aiohttp.ClientResponse,
                          call: MeteredCall, send: Send) -> None:
        body = await response.read()
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        usage, reply, served, request_id = route.read_json(data)
        # The client has its answer first; settling is not on its time.
        await _send_bytes(send, response.status, body, None, _relay_headers(response))
        details = {"reply": reply, "served_model": served, "http_status": response.status,
                   "request_id": request_id or response.headers.get("x-request-id"),
                   "inline": self.tenants.inline}
        try:
            await metering.finish(call, usage, **details)
        except QwenMeterError as exc:  # usage we cannot read must not lose the record
            log.warning("could not read the usage of an answer: %s", exc)
            if not call.settled:
                await metering.finish(call, None, **details)

    async def _relay_stream(self, route: Route, prepared: Prepared,
                            response: aiohttp.ClientResponse, call: MeteredCall,
                            send: Send) -> None:
        reader = route.reader(prepared)

        def details(status: str) -> dict[str, Any]:
            ok = reader.usage is not None
            return {"reply": reader.message(), "served_model": reader.model,
                    "request_id": reader.request_id or response.headers.get("x-request-id"),
                    "status": "ok" if ok else status}

        await send({"type": "http.response.start", "status": response.status,
                    "headers": _relay_headers(response)})
        self.metrics.open_streams.inc()
        last = b""  # the stream's last bytes, to see how it ended
        try:
            async for data in response.content.iter_any():
                last = (last + data)[-32:]
                out = reader.feed(data)
                if out:
                    await send({"type": "http.response.body", "body": out, "more_body": True})
            tail = reader.flush()
            if not route.ended(reader, last):
                # A close-delimited body ends "normally" when the upstream drops it.
                raise UpstreamDropped(f"{route.path}: the upstream stream ended early")
        except asyncio.CancelledError:
            # The client hung up (or shutdown ran out of time): the caller closes the
            # upstream connection; settle what was received.
            metering.settle_now(call, reader.usage, **details("closed"))
            raise
        except (aiohttp.ClientError, asyncio.TimeoutError, UpstreamDropped):
            await metering.finish(call, reader.usage, inline=self.tenants.inline,
                                  **details("dropped"))
            raise  # the client sees the connection drop, as the upstream did
        finally:
            self.metrics.open_streams.dec()
        await send({"type": "http.response.body", "body": tail, "more_body": False})
        await metering.finish(call, reader.usage, inline=self.tenants.inline,
                              **details("incomplete"))


class _TrackedSend:
    """``send``, noting when the answer's last byte has gone out."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.complete = False

    async def __call__(self, message: Message) -> None:
        await self.send(message)
        if message["type"] == "http.response.body" and not message.get("more_body"):
            self.complete = True


def _refusal(exc: QwenMeterError, tenant: Tenant) -> Answer:
    """The answer DashScope would give for what the pipeline refused."""
    who = f"gateway key {tenant.name!r}" if tenant.name else "gateway"
    if isinstance(exc, RateLimited):
        if math.isinf(exc.retry_after):
            return answers.bad_request(f"{exc} ({who})", "rate_limited")
        return answers.rate_limited(f"{who}: {exc}", exc.retry_after)
    if isinstance(exc, BudgetExceeded):
        return answers.budget_exceeded(f"{exc} ({who})")
    if isinstance(exc, LimitExceeded):
        return answers.bad_request(f"Range of input length exceeded: {exc}", "preflight")
    if isinstance(exc, (UnknownModel, NotOffered)):
        return answers.unknown_model(str(exc))
    if isinstance(exc, InvalidMessages):
        return answers.bad_request(str(exc))
    return answers.bad_request(f"{type(exc).__name__}: {exc}")


def _relay_headers(response: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in response.raw_headers
            if k.decode("latin-1").lower() not in _HOP]


async def _send_bytes(send: Send, status: int, body: bytes, content_type: bytes | None,
                      headers: list[tuple[bytes, bytes]] | None = None) -> None:
    out = list(headers or [])
    if content_type is not None:
        out.append((b"content-type", content_type))
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive, headers: dict[str, str], limit: int) -> bytes:
    declared = headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise _TooLarge  # refuse before reading a byte of it
    parts: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _TooLarge
        parts.append(chunk)
        if not message.get("more_body"):
            return b"".join(parts)


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def create_app(config: GatewayConfig | None = None, **options: Any) -> Gateway:
    """The gateway for ``config`` (default: the embedded default config)."""
    from .config import default_config

    return Gateway(config or default_config(), **options)
