"""The floor for the gateway benchmark: a bare pass-through proxy built from the gateway's own
parts (uvicorn + aiohttp) and nothing else — no keys, no limits, no metering, no parsing.

``python benchmarks/bench_passthrough.py PORT UPSTREAM`` forwards every POST to UPSTREAM + the
same path, and relays the answer: JSON whole, an event stream chunk by chunk as it arrives.
What the gateway adds beyond this proxy is what metering costs.
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp

UPSTREAM = ""
_HOP = {b"connection", b"keep-alive", b"transfer-encoding", b"content-length", b"server",
        b"date", b"content-encoding"}
_session: aiohttp.ClientSession | None = None


async def app(scope: Any, receive: Any, send: Any) -> None:
    global _session
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                _session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if _session is not None:
                    await _session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    if scope["method"] == "GET":  # readiness probe
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
               if k not in _HOP and k != b"host"]
    assert _session is not None
    async with _session.post(UPSTREAM + scope["path"], data=body, headers=headers) as response:
        await send({"type": "http.response.start", "status": response.status,
                    "headers": [(k, v) for k, v in response.raw_headers
                                if k.lower() not in _HOP]})
        async for data in response.content.iter_any():
            await send({"type": "http.response.body", "body": data, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


if __name__ == "__main__":
    import uvicorn

    UPSTREAM = sys.argv[2].rstrip("/")
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
