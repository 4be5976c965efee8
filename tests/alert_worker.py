"""One process of the shared-ledger alert test: ``calls`` metered calls against a budget in a
shared store, alerts claimed through a ledger (or, with ``none``, this process alone), the
sender drained after each call.

    python alert_worker.py STORE_URL LEDGER_URL|none HOOK_URL LIMIT CALLS
"""

from __future__ import annotations

import sys

from qwen_meter.alerts import AlertObserver, Channel
from qwen_meter.ledger import open_ledger
from qwen_meter.limits.budget.core import Budget
from qwen_meter.meter.pipeline import Meter


def main() -> None:
    store, ledger_url, hook, limit, calls = sys.argv[1:6]
    ledger = None if ledger_url == "none" else open_ledger(ledger_url)
    alerts = AlertObserver([Channel("hook", "json", hook)], claims=ledger, source=sys.argv[0])
    budget = Budget(f"{limit} CNY", per="day", name="team", store=store)
    meter = Meter(budget=budget, log=None, observers=[alerts], calibrate=False)
    for _ in range(int(calls)):
        call = meter.begin({"model": "qwen-plus", "messages": [{"role": "user",
                                                                 "content": "hi"}],
                            "max_tokens": 1})
        call.finish({"prompt_tokens": 1000, "completion_tokens": 0})
        assert alerts.flush(30)
    alerts.close()
    if ledger is not None:
        ledger.close()


if __name__ == "__main__":
    main()
