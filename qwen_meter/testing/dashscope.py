"""A local HTTP server on 127.0.0.1 that answers like DashScope: a stand-in for tests.

Compatible mode (``/compatible-mode/v1/chat/completions``, ``/embeddings``) and the native
text-generation endpoint (``/api/v1/services/aigc/text-generation/generation``), with bodies,
server-sent-event streams, usage placement and error bodies shaped as in DashScope's documents
(usage in a final ``choices: []`` chunk only with ``stream_options.include_usage``; cumulative
``output_tokens`` in native streams; ``{"error": {...}}`` / ``{"code", "message"}`` errors).
Usage is counted with qwen_meter itself, plus ``prompt_offset`` to imitate a server template
that differs from the catalogue's. Tests queue behaviours for the next requests with ``push``:
``status`` (an error answer), ``no_usage``, ``usage`` (a usage object to send as is), ``sep``
(the SSE line ending: ``"\r\n"`` or ``"\r"``), ``no_finish`` (a stream without its final
``finish_reason``), ``drop_after`` (cut a stream), ``slow`` (seconds between chunks),
``non_json`` (a 200 whose body is that text, as ``text/html``: billed, but no answer),
``delay`` (seconds between billing the request and sending the answer's head: a client
that times out or is cancelled meanwhile has been billed).
Also served: ``/completions``, ``/responses``, GET ``/models`` (compatible mode), native
``multimodal-generation``, ``text-embedding``. :meth:`FakeDashScope.transport`: an httpx (or
httpx2) transport sending any URL (``https://dashscope-intl.aliyuncs.com/...``) here.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ..base.errors import UnknownModel
from ..billing.chat_counting import count_completion, count_messages
from ..billing.counting import count_tokens
from ..catalogue.core import default_catalogue, resolve

REPLY = "我是來自阿里雲的大規模語言模型,我叫通義千問。"
REASONING = "用户问我是谁，我应该介绍自己。"
PIECES = ["我是", "來自阿里雲的", "大規模語言模型", ",我叫通義千問。"]


class FakeDashScope:
    """The stand-in server: started when created — on ``host`` (127.0.0.1: this machine only)
    and ``port`` (0: a free one; :attr:`url` says which) — stopped by :meth:`close` (or
    ``with FakeDashScope() as server:``).

    ``requests`` lists every request received; ``billed`` every request it answered with a
    success (what DashScope would bill: the answer was produced, whether or not the client read
    it all), as ``{"path", "model", "stream"}`` — tests compare usage records against it."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.behaviours: deque[dict[str, Any]] = deque()
        self.requests: list[dict[str, Any]] = []
        self.billed: list[dict[str, Any]] = []
        self.prompt_offset = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                server.handle(self)

            def do_GET(self) -> None:
                server.listing(self)

        class Server(ThreadingHTTPServer):
            request_queue_size = 256  # many concurrent clients (the default backlog is 5)

            def handle_error(self, request: Any, client_address: Any) -> None:
                # A client that hangs up mid-answer is what tests of dropped or abandoned
                # streams do on purpose: not worth a traceback. Anything else still prints.
                if not isinstance(sys.exc_info()[1], ConnectionError):
                    super().handle_error(request, client_address)

        self.httpd = Server((host, port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        """``http://host:port`` of the server (a wildcard host is reached on 127.0.0.1)."""
        host = str(self.httpd.server_address[0])
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        host = "[::1]" if host == "::" else f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.httpd.server_address[1]}"

    @property
    def compatible(self) -> str:
        return f"{self.url}/compatible-mode/v1"

    @property
    def native(self) -> str:
        return f"{self.url}/api/v1"

    def push(self, *behaviours: dict[str, Any]) -> None:
        with self.lock:
            self.behaviours.extend(behaviours)

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeDashScope:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def transport(self, hx: Any = None, *, asynchronous: bool = False) -> Any:
        """An ``hx`` (httpx by default) transport that sends every request to this server,
        whatever host its URL names, keeping path and query."""
        if hx is None:
            import httpx as hx
        port = self.httpd.server_address[1]
        base = hx.AsyncHTTPTransport if asynchronous else hx.HTTPTransport

        def local(request: Any) -> Any:
            url = request.url.copy_with(scheme="http", host="127.0.0.1", port=port)
            return hx.Request(request.method, url, headers=request.headers,
                              content=request.content, extensions=request.extensions)

        class Local(base):  # type: ignore[misc, valid-type]
            def handle_request(self, request: Any) -> Any:
                return super().handle_request(local(request))

            async def handle_async_request(self, request: Any) -> Any:
                return await super().handle_async_request(local(request))

        return Local()

    # --- answers ----------------------------------------------------------------------------

    def _next(self) -> dict[str, Any]:
        with self.lock:
            return self.behaviours.popleft() if self.behaviours else {}

    def listing(self, h: BaseHTTPRequestHandler) -> None:  # the catalogue's, never billed
        with self.lock:
            self.requests.append({"path": h.path, "method": "GET",
                                  "headers": {k.lower(): v for k, v in h.headers.items()}})
        models: dict[str, Any] = {f"/compatible-mode/v1/models/{m.name}": {
            "id": m.name, "object": "model"} for m in default_catalogue()}
        models["/compatible-mode/v1/models"] = {"object": "list", "data": [*models.values()]}
        found = models.get(h.path.split("?")[0].rstrip("/"))
        self._send_json(h, 404 if found is None else 200, found or {"error": {"message": "no"}})

    def handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("content-length") or 0)
        body = json.loads(h.rfile.read(length) or b"{}")
        with self.lock:
            self.requests.append({"path": h.path, "body": body,
                                  "headers": {k.lower(): v for k, v in h.headers.items()}})
        known = ("/completions", "/embeddings", "/responses", "/text-generation/generation",
                 "/multimodal-generation/generation", "/text-embedding/text-embedding")
        path = h.path.split("?")[0]
        if not path.endswith(known):
            return self._send_json(h, 501, {"error": {"message": "not implemented here"}})
        behaviour = self._next()
        native = path.startswith("/api/v1/")
        if "status" in behaviour:
            return self._error(h, behaviour, native)
        with self.lock:
            self.billed.append({"path": path, "model": body.get("model"),
                                "stream": bool(body.get("stream") or
                                               (body.get("parameters") or {})
                                               .get("incremental_output"))})
        if behaviour.get("delay"):
            time.sleep(behaviour["delay"])
        if "non_json" in behaviour:
            raw = str(behaviour["non_json"]).encode()
            h.send_response(200)
            h.send_header("Content-Type", "text/html")
            h.send_header("Content-Length", str(len(raw)))
            h.end_headers()
            h.wfile.write(raw)
            return None
        if path.endswith("/embeddings"):
            return self._embeddings(h, body)
        if path.endswith("/text-embedding/text-embedding"):
            return self._native_embeddings(h, body)
        if native:
            return self._native(h, body, behaviour)
        if path.endswith("/responses"):
            return self._responses(h, body, behaviour)
        if not path.endswith("/chat/completions"):
            return self._completions(h, body, behaviour)
        return self._compatible(h, body, behaviour)

    def _send_json(self, h: BaseHTTPRequestHandler, status: int, data: Any,
                   headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(data, ensure_ascii=False).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        h.send_header("x-request-id", uuid.uuid4().hex)
        for key, value in (headers or {}).items():
            h.send_header(key, value)
        h.end_headers()
        h.wfile.write(raw)

    def _error(self, h: BaseHTTPRequestHandler, b: dict[str, Any], native: bool) -> None:
        code = b.get("code", "Throttling.RateQuota")
        message = b.get("message", "Requests rate limit exceeded, please try again later.")
        data = {"code": code, "message": message, "request_id": uuid.uuid4().hex} if native \
            else {"error": {"message": message, "type": code, "param": None, "code": code}}
        headers = {"Retry-After": str(b["retry_after"])} if "retry_after" in b else {}
        self._send_json(h, b["status"], data, headers)

    def _counts(self, model: str, messages: Any, tools: Any, thinking: bool | None,
                reasoning: bool) -> tuple[int, int]:
        try:
            resolve(model)
        except UnknownModel:  # a model the catalogue lacks: the server knows it anyway
            model = "qwen-plus"
        prompt = count_messages(messages, model, tools=tools,
                                   enable_thinking=thinking).tokens + self.prompt_offset
        reply = {"content": REPLY, "reasoning_content": REASONING if reasoning else None}
        return prompt, count_completion(reply, model, enable_thinking=thinking).tokens

    def _compatible(self, h: BaseHTTPRequestHandler, body: dict[str, Any],
                    b: dict[str, Any]) -> None:
        model = body["model"]
        thinking = body.get("enable_thinking")
        prompt, completion = self._counts(model, body["messages"], body.get("tools"),
                                          thinking, bool(thinking))
        usage = b.get("usage") or {"prompt_tokens": prompt, "completion_tokens": completion,
                                   "total_tokens": prompt + completion}
        rid = f"chatcmpl-{uuid.uuid4().hex[:12]}"
        sep = b.get("sep", "\n")
        if not body.get("stream"):
            message = {"role": "assistant", "content": REPLY}
            if thinking:
                message["reasoning_content"] = REASONING
            return self._send_json(h, 200, {
                "id": rid, "object": "chat.completion", "created": int(time.time()),
                "model": model, "system_fingerprint": None,
                "choices": [{"index": 0, "message": message, "finish_reason": "stop",
                             "logprobs": None}],
                "usage": None if b.get("no_usage") else usage})
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream;charset=UTF-8")
        h.end_headers()

        def chunk(delta: dict[str, Any], finish: str | None = None,
                  choices: bool = True, with_usage: Any = None) -> None:
            data = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "system_fingerprint": None,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                 "logprobs": None}] if choices else [],
                    "usage": with_usage}
            h.wfile.write(f": keep-alive{sep}data: {json.dumps(data, ensure_ascii=False)}"
                          f"{sep}{sep}".encode())
            h.wfile.flush()
            if b.get("slow"):
                time.sleep(b["slow"])

        chunk({"content": "", "role": "assistant"})
        pieces = ([{"reasoning_content": REASONING}] if thinking else []) + \
            [{"content": p} for p in PIECES]
        for n, delta in enumerate(pieces):
            if b.get("drop_after") is not None and n >= b["drop_after"]:
                return  # the connection closes mid-stream
            chunk(delta)
        if not b.get("no_finish"):
            chunk({"content": ""}, finish="stop")
        if (body.get("stream_options") or {}).get("include_usage") and not b.get("no_usage"):
            chunk({}, choices=False, with_usage=usage)
        h.wfile.write(f"data: [DONE]{sep}{sep}".encode())

    def _embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        texts = body["input"] if isinstance(body["input"], list) else [body["input"]]
        tokens = sum(count_tokens(t, body["model"]).tokens + 1 for t in texts)
        self._send_json(h, 200, {
            "object": "list", "model": body["model"], "id": uuid.uuid4().hex,
            "data": [{"object": "embedding", "index": i, "embedding": [0.1, 0.2, 0.3]}
                     for i in range(len(texts))],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _native(self, h: BaseHTTPRequestHandler, body: dict[str, Any],
                b: dict[str, Any]) -> None:
        model = body["model"]
        inputs = body.get("input", {})
        if "history" in inputs:  # the legacy form: {"user": ..., "bot": ...} turns + prompt
            messages = [{"role": role, "content": turn[key]} for turn in inputs["history"]
                        for key, role in (("user", "user"), ("bot", "assistant"))
                        if key in turn]
            messages += [{"role": "user", "content": inputs["prompt"]}] \
                if inputs.get("prompt") else []
        else:
            messages = inputs.get("messages") or [{"role": "user",
                                                   "content": inputs.get("prompt")}]
        params = body.get("parameters", {})
        thinking = params.get("enable_thinking")
        prompt, completion = self._counts(model, messages, params.get("tools"), thinking,
                                          bool(thinking))
        rid = uuid.uuid4().hex
        multimodal = "/multimodal-generation/" in h.path
        as_message = params.get("result_format") == "message"

        def output(text: str, finish: str) -> dict[str, Any]:
            if multimodal:
                return {"choices": [{"finish_reason": finish, "message": {
                    "role": "assistant", "content": [{"text": text}]}}]}
            if as_message:
                return {"choices": [{"finish_reason": finish,
                                     "message": {"role": "assistant", "content": text}}]}
            return {"text": text, "finish_reason": finish}

        stream = h.headers.get("X-DashScope-SSE") == "enable" or \
            "text/event-stream" in (h.headers.get("Accept") or "")
        if not stream:
            return self._send_json(h, 200, {
                "output": output(REPLY, "stop"), "request_id": rid,
                "usage": b["usage"] if "usage" in b else {
                    "input_tokens": prompt, "output_tokens": completion,
                    "total_tokens": prompt + completion}})
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream;charset=UTF-8")
        h.end_headers()
        incremental = params.get("incremental_output")
        sep = b.get("sep", "\n")
        so_far = ""
        done = 0
        for n, piece in enumerate(PIECES):
            if b.get("drop_after") is not None and n >= b["drop_after"]:
                return
            so_far += piece
            done = count_completion(so_far, model).tokens
            last = n == len(PIECES) - 1 and not b.get("no_finish")
            data = {"output": output(piece if incremental else so_far,
                                     "stop" if last else "null"),
                    "usage": {"input_tokens": prompt, "output_tokens": done,
                              "total_tokens": prompt + done},
                    "request_id": rid}
            h.wfile.write(f"id:{n + 1}{sep}event:result{sep}:HTTP_STATUS/200{sep}"
                          f"data:{json.dumps(data, ensure_ascii=False)}{sep}{sep}".encode())
            h.wfile.flush()
            if b.get("slow"):
                time.sleep(b["slow"])

    def _completions(self, h: BaseHTTPRequestHandler, body: dict[str, Any],
                     b: dict[str, Any]) -> None:
        prompts = body["prompt"] if isinstance(body["prompt"], list) else [body["prompt"]]
        prompt = sum(count_tokens(p, body["model"]).tokens for p in prompts)
        completion = count_tokens(REPLY, body["model"]).tokens
        self._send_json(h, 200, {
            "id": f"cmpl-{uuid.uuid4().hex[:12]}", "object": "text_completion",
            "model": body["model"],
            "choices": [{"index": 0, "text": REPLY, "finish_reason": "stop"}],
            "usage": b.get("usage") or {"prompt_tokens": prompt, "completion_tokens": completion,
                                        "total_tokens": prompt + completion}})

    def _responses(self, h: BaseHTTPRequestHandler, body: dict[str, Any],
                   b: dict[str, Any]) -> None:
        items = body.get("input")
        messages = ([{"role": "system", "content": body["instructions"]}]
                    if body.get("instructions") else [])
        messages += [{"role": "user", "content": items}] if isinstance(items, str) else [
            {"role": i["role"], "content": i["content"]} for i in items or []]
        prompt, completion = self._counts(body["model"], messages, None, None, False)
        rid = f"resp_{uuid.uuid4().hex[:12]}"
        response = {"id": rid, "object": "response", "model": body["model"],
                    "status": "completed", "created_at": int(time.time()),
                    "output": [{"type": "message", "id": "msg_1", "role": "assistant",
                                "status": "completed",
                                "content": [{"type": "output_text", "text": REPLY,
                                             "annotations": []}]}],
                    "usage": {"input_tokens": prompt, "output_tokens": completion,
                              "total_tokens": prompt + completion,
                              "input_tokens_details": {"cached_tokens": 0},
                              "output_tokens_details": {"reasoning_tokens": 0}}}
        if not body.get("stream"):
            return self._send_json(h, 200, response)
        h.send_response(200)
        h.send_header("Content-Type", "text/event-stream")
        h.end_headers()
        events: list[dict[str, Any]] = [
            {"type": "response.created",
             "response": {**response, "usage": None, "status": "in_progress", "output": []}}]
        events += [{"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0,
                    "content_index": 0, "delta": p} for p in PIECES]
        events.append({"type": "response.completed", "response": response})
        for n, event in enumerate(events):
            h.wfile.write(f"event: {event['type']}\ndata: "
                          f"{json.dumps({**event, 'sequence_number': n}, ensure_ascii=False)}"
                          "\n\n".encode())
            h.wfile.flush()

    def _native_embeddings(self, h: BaseHTTPRequestHandler, body: dict[str, Any]) -> None:
        texts = body["input"]["texts"]
        texts = texts if isinstance(texts, list) else [texts]
        tokens = sum(count_tokens(t, body["model"]).tokens + 1 for t in texts)
        self._send_json(h, 200, {
            "output": {"embeddings": [{"text_index": i, "embedding": [0.1, 0.2]}
                                      for i in range(len(texts))]},
            "usage": {"total_tokens": tokens}, "request_id": uuid.uuid4().hex})
