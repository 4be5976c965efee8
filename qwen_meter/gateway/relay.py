"""Relaying one admitted call: the request to the upstream with the real key, its answer back to
the client (JSON whole, streams chunk by chunk, errors as the upstream gave them), then the
call settled with the usage the answer reported.

:class:`Relay` is a part of :class:`~qwen_meter.gateway.app.Gateway` (its base class): it uses
the gateway's HTTP client, real keys, tenants and metrics.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Any

import aiohttp

from ..base.errors import QwenMeterError
from ..meter.server_errors import classify
from . import answers, metering
from . import headers as client_headers
from .asgi import Send, send_bytes

if TYPE_CHECKING:
    from ..meter.call import MeteredCall
    from .answers import Answer
    from .config import GatewayConfig
    from .metrics import GatewayMetrics
    from .routes import Prepared, Route
    from .tenants import Tenant, Tenants

log = logging.getLogger("qwen_meter.gateway")

# Headers that describe one hop, not the message (RFC 9110 §7.6.1), plus the ones the relay
# sets itself.
_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te",
       "trailer", "trailers", "transfer-encoding", "upgrade", "host", "content-length",
       "accept-encoding", "content-encoding", "server", "date"}


class UpstreamDropped(Exception):
    """The upstream closed a stream before its end; raised to drop the client's too."""


class Relay:
    """The upstream half of the gateway (see the module docs)."""

    _client: aiohttp.ClientSession | None
    config: GatewayConfig
    secrets: dict[str, str | None]
    tenants: Tenants
    metrics: GatewayMetrics

    if TYPE_CHECKING:
        async def _answer(self, send: Send, answer: Answer, native: bool,
                          tenant: Tenant | None) -> None: ...

    def _forwarded(self, tenant: Tenant, headers: dict[str, str]) -> dict[str, str]:
        """The client's headers that go upstream (:mod:`.headers`); raises
        :class:`~.headers.HeaderRefused` for an account header the key may not send."""
        own = self.secrets.get(tenant.upstream.name) is None
        return client_headers.upstream(headers, self.config.headers,
                                       tenant.key.headers if tenant.key else (),
                                       own_account=own)

    def _upstream(self, path: str, tenant: Tenant, headers: dict[str, str],
                  query: bytes) -> tuple[str, list[tuple[str, str]]]:
        out = [(k, v) for k, v in headers.items() if k not in _HOP]
        secret = self.secrets.get(tenant.upstream.name)
        if secret is not None:
            out = [(k, v) for k, v in out if k not in ("authorization", "x-api-key")]
            out.append(("authorization", f"Bearer {secret}"))
        out.append(("accept-encoding", "identity"))  # relay and parse the same bytes
        url = tenant.upstream.url + path + (f"?{query.decode('latin-1')}" if query else "")
        return url, out

    async def _relay(self, route: Route, tenant: Tenant, headers: dict[str, str],
                     prepared: Prepared, query: bytes, call: MeteredCall, send: Send) -> None:
        assert self._client is not None, "the gateway was not started"
        url, out = self._upstream(route.path, tenant, headers, query)
        try:
            response = await self._client.request("POST", url, data=prepared.body,
                                                  headers=out, allow_redirects=False)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            # Not connected: nothing billed. Sent, then timed out or dropped: ``unknown``,
            # charged at the estimate (the upstream may have billed it).
            await metering.interrupted(call, exc, "send", inline=self.tenants.inline)
            await self._answer(send, answers.upstream_failed(type(exc).__name__),
                               route.native, tenant)
            return
        except BaseException as exc:  # the client hung up while the upstream worked on it
            await metering.interrupted(call, exc, "send", inline=self.tenants.inline)
            raise
        try:
            if response.status >= 400:
                await self._relay_error(response, tenant, call, send)
            elif "text/event-stream" in response.headers.get("content-type", ""):
                await self._relay_stream(route, prepared, response, call, send)
            else:
                await self._relay_json(route, response, call, send)
        except BaseException as exc:
            if not call.settled:  # cut short while the answer arrived: settled, not leaked
                await metering.interrupted(call, exc, "refused" if response.status >= 400
                                           else "body", inline=self.tenants.inline,
                                           http_status=response.status)
            raise
        finally:
            # Closing (not releasing) an unfinished response drops the upstream connection:
            # that is what cancels the upstream request when the client has gone.
            if response.content.at_eof():
                response.release()
            else:
                response.close()

    async def _pass(self, tenant: Tenant, path: str, headers: dict[str, str], query: bytes,
                    send: Send) -> None:
        """A GET the upstream answers for free (the model list): relayed with the real key,
        counted in ``free_calls_total``, never charged, limited or recorded as usage."""
        assert self._client is not None, "the gateway was not started"
        try:
            forward = self._forwarded(tenant, headers)
        except client_headers.HeaderRefused as exc:
            await self._answer(send, answers.header_denied(exc.name, tenant.name or "-"),
                               False, tenant)
            return
        url, out = self._upstream(path, tenant, forward, query)
        try:
            async with self._client.request("GET", url, headers=out,
                                            allow_redirects=False) as response:
                body = await response.read()
                head = _relay_headers(response)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            self.metrics.free_call(tenant.name, "models", "error")
            await self._answer(send, answers.upstream_failed(type(exc).__name__), False,
                               tenant)
            return
        secret = self.secrets.get(tenant.upstream.name)
        if secret and secret.encode() in body:  # never echo the real key to a tenant
            body = body.replace(secret.encode(), b"***")
        self.metrics.free_call(tenant.name, "models",
                               "ok" if response.status < 400 else "error")
        await send_bytes(send, response.status, body, None, head)

    async def _relay_error(self, response: aiohttp.ClientResponse, tenant: Tenant,
                           call: MeteredCall, send: Send) -> None:
        body = await response.read()
        secret = self.secrets.get(tenant.upstream.name)
        if secret and secret.encode() in body:  # never echo the real key to a tenant
            body = body.replace(secret.encode(), b"***")
        error = classify(response.status, body, response.headers)
        await send_bytes(send, response.status, body, None, _relay_headers(response))
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
        await send_bytes(send, response.status, body, None, _relay_headers(response))
        details = {"reply": reply, "served_model": served, "http_status": response.status,
                   "request_id": request_id or response.headers.get("x-request-id"),
                   "inline": self.tenants.inline}
        if not isinstance(data, dict):
            # A success status with a body that is no answer (a proxy's HTML page, a cut
            # body): the client got nothing it can read, yet the server may have billed.
            kind = response.headers.get("content-type", "no content type")
            await metering.finish(call, None, **{**details, "reply": None}, status="unknown",
                                  error=f"HTTP {response.status} with a body that is not a "
                                        f"JSON answer ({kind}, {len(body)} bytes); outcome "
                                        "unknown, charged at the pre-call estimate")
            return
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
            # A stream that ended with its usage is complete; one the upstream dropped is
            # ``dropped`` even with usage read (a native stream carries it in every event):
            # the client saw the connection fail.
            ok = reader.usage is not None and status != "dropped"
            return {"reply": reader.message(), "served_model": reader.model,
                    "request_id": reader.request_id or response.headers.get("x-request-id"),
                    "status": "ok" if ok else status}

        await send({"type": "http.response.start", "status": response.status,
                    "headers": _relay_headers(response)})
        self.metrics.open_streams.inc()
        last = b""  # the stream's last bytes, to see how it ended
        try:
            async for data in response.content.iter_any():
                last = data[-32:] if len(data) >= 32 else (last + data)[-32:]
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


def _relay_headers(response: aiohttp.ClientResponse) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in response.raw_headers
            if k.decode("latin-1").lower() not in _HOP]
