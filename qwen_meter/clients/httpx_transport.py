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
and timeouts are the client's to retry (its ``max_retries`` is kept), and each attempt is its
own record: one that never connected is an ``error`` with nothing billed; one that was sent and
then timed out or lost its connection is ``unknown`` — DashScope may have billed it — charged
at its estimate; one whose caller was cancelled (``asyncio`` / ``anyio`` cancellation, Ctrl-C)
is ``cancelled``, charged the same way. ``Meter(retry=RetryPolicy(max_retries=0))`` leaves every
retry to the client.

Both ``httpx`` and ``httpx2`` (openai 3.x's default) are supported: :func:`transports` builds
the two classes for either module.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from ..meter.pipeline import Meter
from .httpx_calls import _error, _final, _is_stream, _json_outcome, _prepare_body, _with_usage
from .httpx_streams import stream_classes, wrap_stream


@cache
def transports(hx: Any) -> tuple[type, type]:
    """(MeteredTransport, AsyncMeteredTransport) for the httpx-like module ``hx``."""
    MeteredStream, AsyncMeteredStream = stream_classes(hx)

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
            phase = "send"
            try:
                while True:
                    phase = "send"
                    response = self.inner.handle_request(request)
                    if response.status_code >= 400:
                        phase = "refused"  # an error answer: nothing was billed
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
                        return wrap_stream(hx, MeteredStream, call, inject, request, response)
                    phase = "body"
                    response.read()
                    call.finish(**_json_outcome(endpoint, response))
                    return response
            except BaseException as exc:  # Ctrl-C too: a sent call is charged, not lost
                if not call.settled:
                    call.interrupted(exc, phase)
                raise

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
            phase = "send"
            try:
                while True:
                    phase = "send"
                    response = await self.inner.handle_async_request(request)
                    if response.status_code >= 400:
                        phase = "refused"  # an error answer: nothing was billed
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
                        return wrap_stream(hx, AsyncMeteredStream, call, inject, request,
                                           response)
                    phase = "body"
                    await response.aread()
                    await call.finish_async(**_json_outcome(endpoint, response))
                    return response
            except BaseException as exc:  # CancelledError is not an Exception
                if not call.settled:
                    await call.interrupted_async(exc, phase)
                raise

        async def aclose(self) -> None:
            await self.inner.aclose()

    return MeteredTransport, AsyncMeteredTransport
