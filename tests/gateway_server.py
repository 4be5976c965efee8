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
