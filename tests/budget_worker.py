"""A process that spends against a shared budget (used by the multi-process stress test)."""

from __future__ import annotations

import random
from decimal import Decimal


def spend(store_url: str, name: str, seed: int, rounds: int) -> str:
    from qwen_meter.base.errors import BudgetExceeded
    from qwen_meter.limits.budget.core import Budget
    from qwen_meter.limits.store import open_store

    store = open_store(store_url, **({"server_time": False} if store_url.startswith("redis")
                                     else {}))
    budget = Budget("5 CNY", name=name, store=store)
    rng = random.Random(seed)
    committed = Decimal(0)
    for _ in range(rounds):
        worst = Decimal(rng.randint(1, 40)) / 100
        try:
            reservation = budget.reserve(worst)
        except BudgetExceeded:
            continue
        if rng.random() < 0.2:
            budget.release(reservation)
            continue
        real = worst * Decimal(rng.randint(0, 10)) / 10
        budget.commit(reservation, real)
        committed += real
    store.close()
    return str(committed)
