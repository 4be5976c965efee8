"""A process that calls the fake server through a metered client (multi-process test)."""

from __future__ import annotations


def run(base_url: str, store_url: str, log_path: str, calls: int) -> int:
    import openai

    import qwen_meter as qm

    budget = qm.Budget("0.0005 CNY", name="shared", store=store_url)
    limiter = qm.RateLimiter(store_url, limits={"qwen-plus": (100_000, 100_000_000)})
    meter = qm.Meter(log=log_path, budget=budget, limiter=limiter)
    client = meter.wrap(openai.OpenAI(api_key="sk-x", base_url=base_url))
    done = 0
    for _ in range(calls):
        try:
            client.chat.completions.create(
                model="qwen-plus", max_tokens=20,
                messages=[{"role": "user", "content": "你是誰?"}])
            done += 1
        except qm.BudgetExceeded:
            pass
    meter.close()
    return done
