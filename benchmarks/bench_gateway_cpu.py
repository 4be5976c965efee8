"""Where a streamed call's CPU goes in the gateway, without the load generator's noise: the
gateway app, the same app with the meter's two calls made no-ops, and the bare pass-through
(``bench_passthrough.py``) are driven in this process over ASGI — no uvicorn, no HTTP client —
against the canned upstream (``bench_upstream.py``, another process), in interleaved rounds.

Run:  pip install ".[gateway]"; python benchmarks/bench_gateway_cpu.py [--rounds R]
      [--calls N] [--clients C] [--plain]

Each figure is this process's CPU time per call (the app's work plus the few µs of the ASGI
driver, the same for every row), the minimum and the median over the rounds: on a shared
machine the minimum is the least disturbed. "gateway" minus "gateway, meter calls no-ops" is
what the meter's pipeline costs a gateway call (pre-flight count, estimate and price, limiter,
journal intent; then the usage read, priced, recorded, logged and observed); "gateway, meter
calls no-ops" minus "pass-through" is the gateway's own work (routing, the key, the body read,
header rules, the disconnect watcher, asking for and hiding the usage chunk, metrics). The
no-op variant is for this breakdown only: a gateway never runs without its meter.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE))

import bench_passthrough  # noqa: E402
from bench_gateway import BODY, serving  # noqa: E402
from gateway_server import free_port  # noqa: E402

from qwen_meter.gateway import metering  # noqa: E402
from qwen_meter.gateway.app import Gateway  # noqa: E402
from qwen_meter.gateway.server import resolve_config  # noqa: E402

App = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


def scope(body: bytes) -> dict[str, Any]:
    return {"type": "http", "method": "POST", "path": "/compatible-mode/v1/chat/completions",
            "query_string": b"", "client": ("127.0.0.1", 40000),
            "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"),
                        (b"authorization", b"Bearer sk-bench"), (b"accept", b"*/*"),
                        (b"content-length", str(len(body)).encode())]}


async def call(app: App, body: bytes) -> None:
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.sleep(3600)  # the client never hangs up
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope(body), receive, send)
    if sent[0].get("status") != 200:
        raise RuntimeError(f"answer {sent[0]}")


async def batch(app: App, body: bytes, calls: int, clients: int) -> float:
    """CPU µs per call of ``calls`` calls, ``clients`` at a time."""
    work = iter(range(min(clients, 20)))

    async def worker() -> None:
        for _ in work:
            await call(app, body)

    await asyncio.gather(*(worker() for _ in range(min(clients, 20))))  # warm, untimed
    work = iter(range(calls))
    started = time.process_time()
    await asyncio.gather(*(worker() for _ in range(clients)))
    return (time.process_time() - started) * 1e6 / calls


class _NoCall:
    settled = False


async def _no_begin(*args: Any, **kwargs: Any) -> _NoCall:
    return _NoCall()


async def _no_finish(*args: Any, **kwargs: Any) -> None:
    return None


async def run_gateway(upstream: str, body: bytes, calls: int, clients: int,
                      meter: bool) -> float:
    folder = tempfile.mkdtemp(prefix="bench-gateway-cpu-")
    app = Gateway(resolve_config(upstream=upstream, log=f"{folder}/usage.jsonl"))
    app.start()
    saved = metering.begin, metering.finish
    if not meter:
        metering.begin, metering.finish = _no_begin, _no_finish  # type: ignore[assignment]
    try:
        return await batch(app, body, calls, clients)
    finally:
        metering.begin, metering.finish = saved  # type: ignore[assignment]
        await app.aclose()
        shutil.rmtree(folder, ignore_errors=True)


async def run_passthrough(upstream: str, body: bytes, calls: int, clients: int) -> float:
    import aiohttp

    bench_passthrough.UPSTREAM = upstream
    bench_passthrough._session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0), auto_decompress=False)
    try:
        return await batch(bench_passthrough.app, body, calls, clients)
    finally:
        await bench_passthrough._session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=600, help="calls per batch")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--plain", action="store_true", help="plain calls, not streams")
    args = parser.parse_args()
    try:
        import uvloop
        run: Callable[[Any], Any] = uvloop.run
    except ImportError:  # pragma: no cover - the gateway extra installs it with uvicorn
        run = asyncio.run
    body = json.dumps({**BODY, "stream": not args.plain}).encode()
    port = free_port()
    upstream = f"http://127.0.0.1:{port}"
    rows: dict[str, list[float]] = {}
    loads = [os.getloadavg()[0]]
    with serving([sys.executable, str(HERE / "bench_upstream.py"), str(port)], upstream,
                 {"PYTHONPATH": str(HERE.parent)}):
        for _ in range(args.rounds):
            for name, job in (
                    ("pass-through", lambda: run_passthrough(upstream, body, args.calls,
                                                             args.clients)),
                    ("gateway, meter calls no-ops", lambda: run_gateway(
                        upstream, body, args.calls, args.clients, meter=False)),
                    ("gateway", lambda: run_gateway(upstream, body, args.calls, args.clients,
                                                    meter=True))):
                rows.setdefault(name, []).append(run(job()))
            loads.append(os.getloadavg()[0])
    kind = "plain calls" if args.plain else "streams"
    print(f"CPU per call, {args.clients} {kind} at a time, {args.rounds} rounds of "
          f"{args.calls}, load average {min(loads):.1f}-{max(loads):.1f} (min / median µs):")
    for name, values in rows.items():
        print(f"  {name:<28} {min(values):6.0f} / {statistics.median(values):6.0f}")


if __name__ == "__main__":
    main()
