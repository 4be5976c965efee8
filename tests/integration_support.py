"""Shared set-up for the integration tests: a fake DashScope and meters that log to tmp."""

from __future__ import annotations

from typing import Any

import qwen_meter as qm
from qwen_meter.testing.dashscope import FakeDashScope

HELLO = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "你是誰?"}]
KEY = "sk-test0123456789abcdef"


def openai_client(meter: qm.Meter, server: FakeDashScope) -> Any:
    import openai

    return meter.wrap(openai.OpenAI(api_key=KEY, base_url=server.compatible))


def refused_record(**fields: Any) -> qm.UsageRecord:
    """A record as the pipeline writes it for a call refused before sending."""
    values: dict[str, Any] = {"model": "qwen-plus", "status": "refused",
                              "error_kind": "BudgetExceeded",
                              "error": "budget 'budget' would go over its limit",
                              "latency_ms": 2.5, "currency": "CNY"}
    values.update(fields)
    return qm.UsageRecord(**values)
