#!/usr/bin/env bash
# The gateway — meter any client (curl here; Java, Node, Dify alike) through qwen-meter serve.
#
#   DASHSCOPE_API_KEY=sk-... bash examples/gateway_curl.sh
#   bash examples/gateway_curl.sh --offline      # no key: a local DashScope stand-in upstream
#
# Environment: UPSTREAM (default https://dashscope.aliyuncs.com; or a stand-in started with
# `python -m qwen_meter.testing`), PORT (default 8080), QWEN_METER_LOG (the usage log; default:
# the meter's), QWEN_METER_EXAMPLE_OFFLINE=1 (same as --offline), PYTHON (for --offline).
# Needs the gateway extra: pip install ".[gateway]".
# Exits non-zero when the call fails (curl --fail-with-body), with the gateway's error shown.
set -euo pipefail

OFFLINE=${QWEN_METER_EXAMPLE_OFFLINE:-0}
[[ "${1:-}" == "--offline" ]] && OFFLINE=1
PORT=${PORT:-8080}
QWEN_METER=${QWEN_METER:-qwen-meter}
PYTHON=${PYTHON:-python3}
PIDS=()
SCRATCH=$(mktemp -d)
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$SCRATCH"
}
trap cleanup EXIT

if [[ "$OFFLINE" == 1 ]]; then
  # The stand-in prints its URL once it listens; any key is accepted; calls are logged to a
  # scratch file unless QWEN_METER_LOG says otherwise (stand-in calls are not real spend).
  $PYTHON -m qwen_meter.testing --port 0 >"$SCRATCH/stand-in.out" &
  PIDS+=($!)
  for _ in $(seq 100); do
    grep -q "^DashScope stand-in on " "$SCRATCH/stand-in.out" 2>/dev/null && break
    sleep 0.1
  done
  UPSTREAM=$(sed -n 's/^DashScope stand-in on //p' "$SCRATCH/stand-in.out")
  [[ -n "$UPSTREAM" ]] || { echo "gateway_curl.sh: the DashScope stand-in did not start" >&2; exit 1; }
  DASHSCOPE_API_KEY=${DASHSCOPE_API_KEY:-sk-offline}
  export QWEN_METER_LOG=${QWEN_METER_LOG:-$SCRATCH/usage.jsonl}
  echo "offline: upstream is the DashScope stand-in on $UPSTREAM; usage log $QWEN_METER_LOG" >&2
fi
if [[ -z "${DASHSCOPE_API_KEY:-}" ]]; then
  echo "gateway_curl.sh: DASHSCOPE_API_KEY is not set; export your key, or run with --offline" \
       "to use a local DashScope stand-in" >&2
  exit 2
fi
UPSTREAM=${UPSTREAM:-https://dashscope.aliyuncs.com}

$QWEN_METER serve --upstream "$UPSTREAM" --port "$PORT" &
PIDS+=($!)
for _ in $(seq 100); do
  curl -sf "http://127.0.0.1:$PORT/healthz" >/dev/null && break
  sleep 0.1
done

curl -sS --fail-with-body "http://127.0.0.1:$PORT/compatible-mode/v1/chat/completions" \
  -H "Authorization: Bearer $DASHSCOPE_API_KEY" \
  -H "Content-Type: application/json" \
  -d '{"model": "qwen-plus", "messages": [{"role": "user", "content": "你好"}]}'
echo
