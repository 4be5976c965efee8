"""``openai.OpenAI`` / ``AsyncOpenAI``: the same client, on a metered transport.

The copy keeps everything of the original: base URL, key, headers, timeouts, ``max_retries``
(the client still retries connection errors itself), and its own HTTP client's transport and
mounts (proxy, TLS settings on ``http_client``) underneath the meter — with openai 1.x's httpx
and openai 3.x's httpx2 alike. DashScope's error answers are retried by the meter, which marks
the answer it gives up on ``x-should-retry: false`` so the SDK does not retry it again.
"""

from __future__ import annotations

from typing import Any

from ..meter.pipeline import Meter, UnsupportedClient
from .httpx import rewrap


def wrap_openai(meter: Meter, client: Any) -> Any:
    """A copy of an ``OpenAI`` / ``AsyncOpenAI`` client whose calls are metered."""
    http = getattr(client, "_client", None)
    if http is None:
        raise UnsupportedClient(f"this {type(client).__name__} has no HTTP client to meter")
    return client.copy(http_client=rewrap(meter, http))
