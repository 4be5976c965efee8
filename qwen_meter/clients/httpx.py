"""Metered httpx (or httpx2) clients for any OpenAI-compatible SDK: build one, or rewrap one.

:func:`metered_client` / :func:`metered_async_client` build an ``httpx`` client on
:class:`MeteredTransport` / :class:`AsyncMeteredTransport`; :func:`rewrap` (:func:`wrap_httpx`)
makes a metered copy of an existing httpx or httpx2 client with its settings, transport and
mounts. The transports themselves, and what they meter, are in :mod:`.httpx_transport`.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..meter.pipeline import Meter
from .httpx_transport import transports

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
