"""Job 2 — may we spend it? A metered OpenAI client with a daily budget and a rate limiter.

    DASHSCOPE_API_KEY=sk-... python examples/metered_client.py

Environment: ``DASHSCOPE_BASE_URL`` (default: the Beijing compatible-mode endpoint; the test
suite points it at a local stand-in), ``QWEN_METER_LOG`` (where the usage log goes; default:
the user's data folder).
"""

from __future__ import annotations

import os
import sys

from openai import OpenAI

import qwen_meter as qm

BASE_URL = os.environ.get("DASHSCOPE_BASE_URL",
                          "https://dashscope.aliyuncs.com/compatible-mode/v1")


def main() -> int:
    meter = qm.Meter(
        budget=qm.Budget("5 CNY", per="day", tz="Asia/Shanghai"),  # hard: refuses before sending
        limiter=qm.RateLimiter(),                                   # the catalogue's RPM / TPM
    )
    client = meter.wrap(OpenAI(api_key=os.environ.get("DASHSCOPE_API_KEY", "sk-missing"),
                               base_url=BASE_URL))
    messages = [{"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "你是谁？"}]
    try:
        reply = client.chat.completions.create(model="qwen-plus", messages=messages,
                                               max_tokens=256)
    except qm.BudgetExceeded as exc:
        print(f"refused before sending: {exc}")
        return 1
    print(reply.choices[0].message.content)
    print(f"billed: {reply.usage.prompt_tokens} prompt + {reply.usage.completion_tokens} "
          f"completion tokens")
    budget = meter.budgets[0].status()
    print(f"spent today: {budget.committed} {budget.currency} of {budget.limit}")
    meter.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
