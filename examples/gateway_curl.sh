#!/usr/bin/env bash
# The gateway — meter any client (curl here; Java, Node, Dify alike) through qwen-meter serve.
#
#   DASHSCOPE_API_KEY=sk-... bash examples/gateway_curl.sh
#
# Environment: UPSTREAM (default https://dashscope.aliyuncs.com; the test suite points it at a
# local stand-in), PORT (default 8080), QWEN_METER_LOG (the usage log; default: the meter's).
# Needs the gateway extra: pip install ".[gateway]".
set -euo pipefail

UPSTREAM=${UPSTREAM:-https://dashscope.aliyuncs.com}
PORT=${PORT:-8080}
QWEN_METER=${QWEN_METER:-qwen-meter}

$QWEN_METER serve --upstream "$UPSTREAM" --port "$PORT" &
GATEWAY=$!
trap 'kill "$GATEWAY" 2>/dev/null || true; wait "$GATEWAY" 2>/dev/null || true' EXIT
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.1
done

curl -sS "http://127.0.0.1:$PORT/compatible-mode/v1/chat/completions" \
  -H "Authorization: Bearer ${DASHSCOPE_API_KEY:-sk-missing}" \
  -H "Content-Type: application/json" \
  -d '{"model": "qwen-plus", "messages": [{"role": "user", "content": "你好"}]}'
echo
