"""Job 1 — will this request fit, how many tokens is it, what may it cost?

Runs offline: nothing is sent anywhere.

    python examples/count_and_check.py [request.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import qwen_meter as qm


def load_request(argv: list[str]) -> dict[str, object]:
    if len(argv) > 1:
        return dict(json.loads(Path(argv[1]).read_text(encoding="utf-8")))
    from qwen_meter.base.data import data_dir

    return dict(json.loads((data_dir() / "examples" / "chat.json").read_text(encoding="utf-8")))


def main(argv: list[str]) -> int:
    request = load_request(argv)
    model = str(request.get("model", "qwen-plus"))

    counted = qm.count_messages(request["messages"], model=model, tools=request.get("tools"))
    print(f"prompt: {counted.tokens} tokens ({'exact' if counted.exact else 'estimate'}, "
          f"template {counted.template})")

    try:
        preflight = qm.check({**request, "max_tokens": 1024}, model)
        print(f"fits: {preflight.prompt.tokens} of {preflight.max_input} input tokens, "
              f"up to {preflight.max_tokens} output tokens")
    except qm.LimitExceeded as exc:  # too long for the model: the numbers are in the error
        print(f"does not fit: {exc}")
        return 1

    estimate = qm.estimate_cost(request, model, max_tokens=1024)
    print(f"cost: {estimate.low} .. {estimate.high}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
