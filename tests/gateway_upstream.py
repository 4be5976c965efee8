"""A small upstream for the gateway tests: the endpoints the DashScope stand-in
(qwen_meter/testing/dashscope.py) does not serve.

``/compatible-mode/v1/responses`` (and its older ``/api/v2/apps/protocols/…`` path), JSON or
an event stream ending in ``response.completed``; ``/compatible-mode/v1/completions`` (usage in
a last chunk only with ``stream_options.include_usage``); the native
``multimodal-generation/generation``. Usage figures are fixed, so a test can check that the
record holds exactly what the server reported.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

REPLY = "这是一只猫。"
USAGE = {"input_tokens": 31, "output_tokens": 7, "total_tokens": 38}


class Upstream:
    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # chunked streams, as DashScope sends them

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                server.requests.append({"path": self.path, "body": body})
                server.answer(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def answer(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        stream = body.get("stream") is True
        if h.path.endswith("/responses"):
            done = {"id": "resp_1", "object": "response", "model": body.get("model"),
                    "status": "completed", "usage": USAGE,
                    "output": [{"type": "message", "role": "assistant", "content": [
                        {"type": "output_text", "text": REPLY}]}]}
            if not stream:
                return self.json(h, done)
            events = [("response.created", {"type": "response.created",
                                            "response": {**done, "usage": None}})]
            events += [("response.output_text.delta", {"type": "response.output_text.delta",
                                                       "delta": piece}) for piece in REPLY]
            events.append(("response.completed", {"type": "response.completed",
                                                  "response": done}))
            return self.sse(h, [f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}"
                                for name, data in events])
        if h.path.endswith("/completions"):
            usage = {"prompt_tokens": 31, "completion_tokens": 7, "total_tokens": 38}
            if not stream:
                return self.json(h, {"id": "cmpl-1", "object": "text_completion",
                                     "model": body.get("model"), "usage": usage,
                                     "choices": [{"index": 0, "text": REPLY,
                                                  "finish_reason": "stop"}]})
            chunks = [{"id": "cmpl-1", "model": body.get("model"),
                       "choices": [{"index": 0, "text": piece, "finish_reason": None}]}
                      for piece in REPLY]
            if (body.get("stream_options") or {}).get("include_usage"):
                chunks.append({"id": "cmpl-1", "choices": [], "usage": usage})
            events = [f"data: {json.dumps(c, ensure_ascii=False)}" for c in chunks]
            if body.get("prompt") == "DROP":  # two events, then the connection goes
                return self.sse(h, events[:2], drop=True)
            return self.sse(h, [*events, "data: [DONE]"])
        if h.path.endswith("/multimodal-generation/generation"):
            return self.json(h, {"request_id": "r-1", "usage": {**USAGE, "image_tokens": 20},
                                 "output": {"choices": [{"finish_reason": "stop", "message": {
                                     "role": "assistant", "content": [{"text": REPLY}]}}]}})
        self.json(h, {"error": {"message": "not here"}}, 404)

    @staticmethod
    def json(h: BaseHTTPRequestHandler, data: Any, status: int = 200) -> None:
        raw = json.dumps(data, ensure_ascii=False).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.end_headers()
        h.wfile.write(raw)

    @staticmethod
    def sse(h: BaseHTTPRequestHandler, events: list[str], drop: bool = False) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.send_header("Transfer-Encoding", "chunked")
        h.end_headers()
        for event in events:
            data = f"{event}\n\n".encode()
            h.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            h.wfile.flush()
        if drop:  # no terminating chunk: the body is cut short, as by a network failure
            h.close_connection = True
            return
        h.wfile.write(b"0\r\n\r\n")
