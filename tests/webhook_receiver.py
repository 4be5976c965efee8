"""A real webhook receiver on 127.0.0.1 (http.server in a thread) that records every POST.

Answers are scripted: ``script`` lists (status, body, headers) for the next POSTs, in order;
after it, ``default``. ``hang`` (a threading.Event) holds every answer until it is set, to
play a receiver that never answers while the test checks that nothing waits for it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Post:
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes
    time: float = field(default_factory=time.time)

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class Receiver:
    def __init__(self, default: tuple[int, Any] = (200, {"errcode": 0, "errmsg": "ok"}),
                 script: list[tuple[int, Any, dict[str, str]]] | None = None) -> None:
        self.posts: list[Post] = []
        self.answered = 0
        self.default = default
        self.script = list(script or [])
        self.hang: threading.Event | None = None
        self.entered = threading.Event()  # set when a POST arrived (before any hang)
        self.cond = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                receiver._handle(self)

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that hung up is not the test's business

        self.server = Server(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook?access_token=t0k"

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        raw = h.rfile.read(length)
        parts = urlsplit(h.path)
        post = Post(parts.path, dict(parse_qsl(parts.query)),
                    {k.lower(): v for k, v in h.headers.items()}, raw)
        with self.cond:
            answer = self.script.pop(0) if self.script else (*self.default, {})
            # Recorded on arrival, before answering: once the sender has its answer (and a
            # test's flush returns), the POST is already here.
            self.posts.append(post)
            self.cond.notify_all()
        self.entered.set()
        if self.hang is not None:
            self.hang.wait(60)
        status, body, headers = answer
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        try:
            h.send_response(status)
            for key, value in headers.items():
                h.send_header(key, value)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
        except OSError:
            pass
        with self.cond:
            self.answered += 1

    def wait(self, n: int, timeout: float = 30.0,
             where: Callable[[Post], bool] = lambda p: True) -> list[Post]:
        """The posts matching ``where`` once there are ``n`` (or all there are at the
        timeout, for the caller's assert to show)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [p for p in self.posts if where(p)]
                left = deadline - time.monotonic()
                if len(found) >= n or left <= 0:
                    return found
                self.cond.wait(left)

    def close(self) -> None:
        if self.hang is not None:
            self.hang.set()
        self.server.shutdown()
        self.server.server_close()
