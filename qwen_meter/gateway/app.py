"""The gateway as a plain ASGI application.

No web framework: a reverse proxy needs six exact paths, a body read with a size cap, a
response relayed chunk by chunk with the client's disconnect noticed while it streams — plain
ASGI does all of it with nothing between uvicorn and the relay on the hot path.

One request: find the route (404, 405) → check the virtual key → read the body (413 over
the cap, 408 past the deadline, 429 when its address has too many reads going; see
:mod:`.bodies`) → parse it (400 with the position, 400 without a model) → the client headers
that may go upstream (403 for an account header the key may not send; :mod:`.headers`) → the
meter's pre-flight, budgets and limiter, inside an attribution block for the tenant → send
upstream with the real key → relay the answer (JSON whole, streams chunk by chunk) → settle
the call with the usage it reported. ``GET /compatible-mode/v1/models`` skips the body and the
meter: it is relayed free (:meth:`.Relay._pass`). Any failure before an answer started is a
500 in JSON, never uvicorn's text.

This module takes a request up to an admitted call (routing, keys, body, admission); the
upstream half is :mod:`.relay`, the ASGI plumbing :mod:`.asgi`, the gateway's own answers
(refusals included) :mod:`.answers`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

import aiohttp

from ..base.errors import QwenMeterError
from ..limits.store import StoreUnavailable
from ..meter.attribution import attribute
from . import alerting, answers, bodies, metering
from . import headers as client_headers
from .answers import Answer
from .asgi import (
    ClientGone,
    Receive,
    Scope,
    Send,
    TooLarge,
    TrackedSend,
    disconnected,
    send_bytes,
)
from .config import GatewayConfig
from .fleet import Fleet
from .keys import bearer
from .metrics import CONTENT_TYPE, GatewayMetrics
from .relay import Relay, UpstreamDropped
from .routes import GET_ROUTES, ROUTES, Route
from .tenants import Tenant
from .ui import GatewayUI

__all__ = ["Gateway", "UpstreamDropped", "create_app"]

log = logging.getLogger("qwen_meter.gateway")


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
        # The dashboard at /ui over this gateway's records (its ledger, else its log).
        log = getattr(self.tenants.log, "path", None)
        self.ui = GatewayUI(config, self.fleet.token, config.ledger or (str(log) if log else None),
                            keys=lambda: [t.key for t in self.tenants.by_name.values()],
                            ledger=self.fleet.ledger, store=self.tenants.store)
        # Real keys are read once, at start: a missing variable or file fails here.
        self.secrets = {name: up.api_key(config.file) for name, up in config.upstreams.items()}
        self._client: aiohttp.ClientSession | None = None
        self.body_reads = bodies.BodyReads(config.max_body_reads_per_client)
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
        self.ui.close()
        self.tenants.close()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every answer the gateway gives itself is JSON, a crash included (uvicorn's own
        # would be text/plain).
        tracked = TrackedSend(send)
        try:
            await self._route(scope, receive, tracked)
        except Exception:
            if tracked.started:
                raise  # mid-answer: dropping the connection is all that is left
            log.exception("the gateway failed on %s %s", scope["method"], scope["path"])
            await self._answer(send, answers.internal_error(),
                               scope["path"].startswith("/api/"), None)

    async def _route(self, scope: Scope, receive: Receive, tracked: TrackedSend) -> None:
        path = scope["path"]
        method = scope["method"]
        if path in ("/healthz", "/metrics") and method == "GET":
            if path == "/healthz":
                await send_bytes(tracked, 200 if self.ready else 503,
                                 b'{"status":"ok"}' if self.ready else b'{"status":"starting"}',
                                 b"application/json")
            else:
                await send_bytes(tracked, 200, self.metrics.render(), CONTENT_TYPE.encode())
            return
        if path == "/ui" or path.startswith("/ui/"):
            await self.ui(scope, receive, tracked)
            return
        if path == "/admin" or path.startswith("/admin/"):
            await self.fleet.admin_api(scope, receive, tracked)
            return
        route = ROUTES.get(path.rstrip("/"))
        native = route.native if route else path.startswith("/api/")
        listing = GET_ROUTES.fullmatch(path.rstrip("/"))
        if route is None and listing is None:
            answer = answers.not_allowed(path, method, "GET") if path in (
                "/healthz", "/metrics") else answers.not_metered(path)
            await self._answer(tracked, answer, native, None)
            return
        if method != ("POST" if route else "GET"):
            await self._answer(tracked, answers.not_allowed(path, method, "POST" if route
                                                            else "GET"), native, None)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope["headers"]}
        tenant = self._tenant(headers)
        if tenant is None:
            await self._answer(tracked, answers.unauthorized(), native, None)
            return
        if route is None:
            await self._pass(tenant, path, headers, scope.get("query_string", b""), tracked)
            return
        client = (scope.get("client") or ("-",))[0]
        with self.body_reads.slot(str(client)) as admitted:
            if not admitted:
                await self._answer(tracked, answers.busy_client(self.body_reads.limit),
                                   native, tenant)
                return
            try:
                raw = await bodies.read(receive, headers, limit=self.config.max_body_bytes,
                                        timeout=self.config.body_timeout)
            except TooLarge:
                await self._answer(tracked, answers.too_large(self.config.max_body_bytes),
                                   native, tenant)
                return
            except bodies.TooSlow:
                await self._answer(tracked, answers.body_timeout(self.config.body_timeout),
                                   native, tenant)
                return
            except ClientGone:
                return
        # The relay runs as its own task so that a client hanging up cancels it (and with it
        # the upstream request) at once, even while nothing is being sent.
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
        model = body.get("model")
        if not isinstance(model, str) or not model.strip():
            await self._answer(send, answers.missing_model(), route.native, tenant)
            return
        if not tenant.allows(model):
            await self._answer(send, answers.model_denied(str(body.get("model")),
                                                          tenant.name or "-"),
                               route.native, tenant)
            return
        try:
            forward = self._forwarded(tenant, headers)
        except client_headers.HeaderRefused as exc:
            await self._answer(send, answers.header_denied(exc.name, tenant.name or "-"),
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
                await self._answer(send, answers.store_unavailable(
                    self.tenants.store_retry_after()), route.native, tenant)
                return
            except QwenMeterError as exc:
                await self._answer(send, answers.refusal(exc, tenant), route.native, tenant)
                return
            self.metrics.admission.observe(asyncio.get_running_loop().time() - started)
            await self._relay(route, tenant, forward, prepared, query, call, send)


def create_app(config: GatewayConfig | None = None, **options: Any) -> Gateway:
    """The gateway for ``config`` (default: the embedded default config)."""
    from .config import default_config

    return Gateway(config or default_config(), **options)
