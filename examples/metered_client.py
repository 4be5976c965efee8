"""Job 2 — may we spend it? A metered OpenAI client with a daily budget and a rate limiter.

    DASHSCOPE_API_KEY=sk-... python examples/metered_client.py
    python examples/metered_client.py --offline     # no key: a local DashScope stand-in

Environment: ``DASHSCOPE_BASE_URL`` (default: the Beijing compatible-mode endpoint; point it
at ``python -m qwen_meter.testing`` to test offline with any key), ``QWEN_METER_LOG`` (where the
usage log goes; default: the user's data folder — with ``--offline``, a temporary file, so
stand-in calls never mix with real spend), ``QWEN_METER_EXAMPLE_OFFLINE=1`` (same as
``--offline``).
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from openai import APIError, OpenAI

import qwen_meter as qm

BASE_URL = "https://dashscope.aliyuncs.com/compatible-mode/v1"
NO_KEY = ("metered_client.py: DASHSCOPE_API_KEY is not set; export your key, or run with "
          "--offline to call a local DashScope stand-in instead")


def main(argv: list[str]) -> int:
    offline = "--offline" in argv[1:] or os.environ.get("QWEN_METER_EXAMPLE_OFFLINE") == "1"
    key = os.environ.get("DASHSCOPE_API_KEY")
    if not offline and not key:
        print(NO_KEY, file=sys.stderr)  # never send a made-up key to the real endpoint
        return 2
    if not offline:
        return run(key or "", os.environ.get("DASHSCOPE_BASE_URL", BASE_URL))
    from qwen_meter.testing import FakeDashScope

    with FakeDashScope() as stand_in, tempfile.TemporaryDirectory() as folder:
        if "QWEN_METER_LOG" not in os.environ:
            os.environ["QWEN_METER_LOG"] = str(Path(folder) / "usage.jsonl")
        print(f"offline: calling the DashScope stand-in on {stand_in.url}; "
              f"usage log {os.environ['QWEN_METER_LOG']}")
        return run("sk-offline", stand_in.compatible)


def run(key: str, base_url: str) -> int:
    meter = qm.Meter(
        budget=qm.Budget("5 CNY", per="day", tz="Asia/Shanghai"),  # hard: refuses before sending
        limiter=qm.RateLimiter(),                                   # the catalogue's RPM / TPM
    )
    try:
        client = meter.wrap(OpenAI(api_key=key, base_url=base_url))
        messages = [{"role": "system", "content": "You are a helpful assistant."},
                    {"role": "user", "content": "你是谁？"}]
        try:
            reply = client.chat.completions.create(model="qwen-plus", messages=messages,
                                                   max_tokens=256)
        except qm.BudgetExceeded as exc:
            print(f"refused before sending: {exc}")
            return 1
        except APIError as exc:  # a wrong key, a network error: one line, not a traceback
            print(f"metered_client.py: the call failed: {exc}", file=sys.stderr)
            return 1
        print(reply.choices[0].message.content)
        print(f"billed: {reply.usage.prompt_tokens} prompt + {reply.usage.completion_tokens} "
              f"completion tokens")
        budget = meter.budgets[0].status()
        print(f"spent today: {budget.committed} {budget.currency} of {budget.limit}")
        return 0
    finally:
        meter.close()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
