"""uvicorn's HTTP protocols with the one answer they give themselves made JSON.

A request uvicorn cannot parse (a malformed request line or header, a bad ``Content-Length``,
headers over the size cap) never reaches the ASGI app: uvicorn answers it with a text/plain
400 of its own. Clients of the gateway (SDKs that parse every error body) get the gateway's
JSON error shape instead, from these subclasses, which ``qwen-meter serve`` passes to uvicorn as
its ``http`` protocol. The connection is closed after the answer, as uvicorn does.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol

from . import answers


def _json_400(transport: Any, message: str) -> None:
    status, headers, body = answers.bad_request(message, "http").render(native=False)
    head = [f"HTTP/1.1 {status} Bad Request\r\n".encode()]
    head += [name + b": " + value + b"\r\n" for name, value in headers]
    head.append(b"connection: close\r\n\r\n")
    transport.write(b"".join(head) + body)
    transport.close()


class JsonH11(H11Protocol):
    """uvicorn's h11 protocol, its own 400s in JSON."""

    def send_400_response(self, msg: str) -> None:
        _json_400(self.transport, msg)


JsonHttpTools: type[asyncio.Protocol] | None = None
try:
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
except ImportError:  # pragma: no cover - the gateway extra installs httptools
    pass
else:
    class _JsonHttpTools(HttpToolsProtocol):
        """uvicorn's httptools protocol, its own 400s in JSON."""

        def send_400_response(self, msg: str) -> None:
            _json_400(self.transport, msg)

    JsonHttpTools = _JsonHttpTools


def json_protocol() -> type[asyncio.Protocol]:
    """What uvicorn's ``auto`` would pick (httptools when installed, else h11), answering its
    own 400s in JSON. Module-level classes: worker processes unpickle them by name."""
    return JsonHttpTools or JsonH11
