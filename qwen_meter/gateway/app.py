"""The gateway as a plain ASGI application.

No web framework: a reverse proxy needs six exact paths, a body read with a size cap, a
response relayed chunk by chunk with the client's disconnect noticed while it streams — plain
ASGI does all of it with nothing between uvicorn and the relay on the hot path.

One request: find the route → check the virtual key → read the body (413 over the cap) →
parse it (400 with the position) → the meter's pre-flight, budgets and limiter, inside an
attribution block for the tenant → send upstream with the real key → relay the answer (JSON
whole, streams chunk by chunk) → settle the call with the usage it reported.

This module takes a request up to an admitted call (routing, keys, body, admission); the
upstream half is :mod:`.relay`, the ASGI plumbing :mod:`.asgi`, the gateway's own answers
(refusals included) :mod:`.answers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import aiohttp

from ..base.errors import QwenMeterError
from ..limits.store import StoreUnavailable
from ..meter.attribution import attribute
from . import alerting, answers, metering
from .answers import Answer
from .asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    TooLarge,
    TrackedSend,
    disconnected,
    read_body,
    send_bytes,
)
from .config import GatewayConfig
from .fleet import Fleet
from .keys import bearer
from .metrics import CONTENT_TYPE, GatewayMetrics
from .relay import Relay, UpstreamDropped
from .routes import ROUTES, Route
from .tenants import Tenant

__all__ = ["Gateway", "UpstreamDropped", "create_app"]


class Gateway(Relay):
    """``Gateway(config)`` is an ASGI app; see the module docs."""

    def __init__(self, config: GatewayConfig, *, log_path: str | None = None) -> None:
        self.config = config
        # The ledger, the live key table and the admin API (see .fleet).
        self.fleet = Fleet(config)
        self.metrics = GatewayMetrics(lambda: self.tenants.budgets(),
                                      keys=len(self.fleet.keys))
        self.alerts = alerting.observer(config)
        # Alerts first: when a call shows in the metrics its alert checks are queued already.
        self.tenants = self.fleet.tenants([*filter(None, [self.alerts]), self.metrics],
                                          log_path)
        alerting.attach(self.alerts, self.tenants, self.fleet.ledger)
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
                self.fleet.start()
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
        await alerting.close(self.alerts)
        self.fleet.stop()
        self.tenants.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope["path"]
        method = scope["method"]
        if method == "GET" and path == "/healthz":
            status = 200 if self.ready else 503
            await send_bytes(send, status, b'{"status":"ok"}' if self.ready
                              else b'{"status":"starting"}', b"application/json")
            return
        if method == "GET" and path == "/metrics":
            await send_bytes(send, 200, self.metrics.render(), CONTENT_TYPE.encode())
            return
        if path == "/admin" or path.startswith("/admin/"):
            await self.fleet.admin_api(scope, receive, send)
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
            raw = await read_body(receive, headers, self.config.max_body_bytes)
        except TooLarge:
            await self._answer(send, answers.too_large(self.config.max_body_bytes), native,
                               tenant)
            return
        except ClientGone:
            return
        # The relay runs as its own task so that a client hanging up cancels it (and with it
        # the upstream request) at once, even while nothing is being sent.
        tracked = TrackedSend(send)
        work = asyncio.ensure_future(self._proxy(route, tenant, headers, raw,
                                                 scope.get("query_string", b""), tracked))
        watcher = asyncio.ensure_future(disconnected(receive))
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
        return self.tenants.lookup(bearer(headers))

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
                await self._answer(send, answers.refusal(exc, tenant), route.native, tenant)
                return
            self.metrics.admission.observe(asyncio.get_running_loop().time() - started)
            await self._relay(route, tenant, headers, prepared, query, call, send)


def create_app(config: GatewayConfig | None = None, **options: Any) -> Gateway:
    """The gateway for ``config`` (default: the embedded default config)."""
    from .config import default_config

    return Gateway(config or default_config(), **options)
