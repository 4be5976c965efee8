"""``openai.OpenAI`` / ``AsyncOpenAI``: the same client, on a metered httpx transport.

The copy keeps everything of the original (base URL, key, headers, timeouts, the original
transport underneath) and the whole API; retries move into the metered transport, which knows
which DashScope errors can succeed on a second try.
"""

from __future__ import annotations

from typing import Any

import httpx

from ..meter import Meter
from .httpx import AsyncMeteredTransport, MeteredTransport


def _inner_transport(client: Any) -> Any:
    http = getattr(client, "_client", None)
    return getattr(http, "_transport", None)


def wrap_openai(meter: Meter, client: Any) -> Any:
    """A copy of an ``OpenAI`` / ``AsyncOpenAI`` client whose calls are metered."""
    inner = _inner_transport(client)
    timeout = getattr(client, "timeout", None)
    if type(client).__name__ == "AsyncOpenAI":
        http: Any = httpx.AsyncClient(
            transport=AsyncMeteredTransport(
                meter, inner if isinstance(inner, httpx.AsyncBaseTransport) else None),
            timeout=timeout, follow_redirects=True)
    else:
        http = httpx.Client(
            transport=MeteredTransport(
                meter, inner if isinstance(inner, httpx.BaseTransport) else None),
            timeout=timeout, follow_redirects=True)
    return client.copy(http_client=http, max_retries=0)
