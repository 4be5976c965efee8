"""A canned DashScope compatible-mode upstream for the gateway benchmark: plain ASGI, no work.

``python benchmarks/bench_upstream.py PORT`` serves ``/compatible-mode/v1/chat/completions``
(and ``/chat/completions`` for proxies that drop the prefix) with a fixed reply, as JSON or as
an event stream of eight chunks, with usage when asked. Answers cost next to nothing, so what a
proxy in front adds is what the benchmark sees.
"""

from __future__ import annotations

import json
import sys
from typing import Any

PIECES = ["我是", "來自", "阿里雲的", "大規模", "語言模型", ",我叫", "通義", "千問。"]
USAGE = {"prompt_tokens": 12, "completion_tokens": 16, "total_tokens": 28}


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None,
           choices: bool = True) -> bytes:
    data = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 1,
            "model": "qwen-plus",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}] if choices
            else [], "usage": usage}
    return f"data: {json.dumps(data, ensure_ascii=False)}\n\n".encode()


PLAIN = json.dumps({
    "id": "chatcmpl-bench", "object": "chat.completion", "created": 1, "model": "qwen-plus",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(PIECES)},
                 "finish_reason": "stop"}], "usage": USAGE}, ensure_ascii=False).encode()
STREAM = [_chunk({"role": "assistant", "content": ""}),
          *(_chunk({"content": p}) for p in PIECES), _chunk({}, "stop")]
USAGE_CHUNK = _chunk({}, usage=USAGE, choices=False)


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    request = json.loads(body or b"{}")
    if not request.get("stream"):
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(PLAIN)).encode())]})
        await send({"type": "http.response.body", "body": PLAIN})
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/event-stream;charset=UTF-8")]})
    for chunk in STREAM:
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    if (request.get("stream_options") or {}).get("include_usage"):
        await send({"type": "http.response.body", "body": USAGE_CHUNK, "more_body": True})
    await send({"type": "http.response.body", "body": b"data: [DONE]\n\n"})


if __name__ == "__main__":
    import uvicorn

    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), log_level="warning",
                access_log=False)
