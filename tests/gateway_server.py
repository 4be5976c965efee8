"""Start a real gateway (uvicorn) on a free 127.0.0.1 port: in a thread, or as a process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(url: str, timeout: float = 20.0, process: Any = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"the gateway at {url} did not become healthy")


def eventually(check: Any, *, attempts: int = 600) -> bool:
    """True as soon as ``check()`` is, trying ``attempts`` times 50 ms apart (about 30 s).

    A liveness bound, not a timing: the fleet's "a key changes on every replica within 2 s" is
    measured in benchmarks/bench_fleet_keys.py; a test only asserts that the change arrives,
    so a loaded CI machine makes it slower, never red."""
    for _ in range(attempts):
        if check():
            return True
        time.sleep(0.05)
    return False


def wait_answering(url: str, process: Any = None, *, attempts: int = 600) -> None:
    """Poll ``url`` until it answers 200; fails at once with what ``process`` printed if it
    exits first. A bound on attempts, not a clock: a loaded machine only makes it slower."""
    for _ in range(attempts):
        if process is not None and process.poll() is not None:
            out = process.stdout.read() if process.stdout else ""
            out = out.decode() if isinstance(out, bytes) else out
            raise RuntimeError(f"the server exited ({process.returncode}): {out}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not answer after {attempts} attempts")


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Serve any ASGI ``app`` with uvicorn in a thread; yields ``http://127.0.0.1:PORT`` once
    its startup finished (an event uvicorn's own startup sets, not a poll)."""
    import uvicorn

    started = threading.Event()

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            started.set()

    port = free_port()
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning",
                                   lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        if not started.wait(120):  # a liveness bound: a server that never starts
            raise RuntimeError("uvicorn did not start")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def running_gateway(app: Any, *, shutdown_timeout: float = 5.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread; yields its base URL; stops it gracefully."""
    import uvicorn

    from qwen_meter.gateway.protocols import json_protocol

    port = free_port()
    # the HTTP protocol `qwen-meter serve` runs (its own 400s in JSON)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical",
                            lifespan="on", timeout_graceful_shutdown=shutdown_timeout,
                            http=json_protocol())
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url)
        yield url
    finally:
        server.should_exit = True
        thread.join(30)


@contextmanager
def gateway_process(*args: str, env: dict[str, str] | None = None) -> Iterator[tuple[str, Any]]:
    """``python -m qwen_meter.cli serve ARGS --port N`` as a process; yields (URL, process)."""
    port = free_port()
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    process = subprocess.Popen([sys.executable, "-m", "qwen_meter.cli", "serve", *args,
                                "--port", str(port)], env=environment, cwd=str(ROOT),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process=process)
        yield url, process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.output = process.communicate(timeout=20)  # (stdout, stderr)
        except subprocess.TimeoutExpired:
            process.kill()
            process.output = process.communicate()
