"""A process that hammers one shared limiter and budget from many threads (stress tests).

Run as ``python limit_worker.py URL ACCOUNT THREADS ATTEMPTS LOG [CRASH_AFTER]``: every
admission and commit is appended to LOG before the thread goes on; with CRASH_AFTER the process
dies (``os._exit``) right after its CRASH_AFTER-th budget reservation, leaving that reservation
held and every other thread cut off mid-loop.
"""

from __future__ import annotations

import os
import random
import sys
import threading
from decimal import Decimal

RPM, TPM = 150, 6000
BUDGET = "40 CNY"  # runs out late in a run: overshoot is tested, the crashes still happen


def main(url: str, account: str, threads: int, attempts: int, log_path: str,
         crash_after: int | None) -> None:
    import qwen_meter as qm
    from qwen_meter.limits.budget.core import Budget
    from qwen_meter.limits.limiter.core import RateLimiter
    from qwen_meter.limits.store import open_store

    store = open_store(url)
    limiter = RateLimiter(store, account=account, limits={"m": (RPM, TPM)}, smooth=False)
    budget = Budget(BUDGET, name=account, store=store, lease=1.0)
    lock = threading.Lock()
    log = open(log_path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - os._exit ends it
    reserved = [0]
    start = threading.Barrier(threads)

    def write(line: str) -> None:
        with lock:
            log.write(line + "\n")

    def work(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(attempts):
            try:
                permit = limiter.try_acquire("m", rng.randint(1, 60))
            except qm.RateLimited:
                pass
            else:
                write(f"admit {permit.bucket} {permit.tokens}")
            try:
                held = budget.reserve(Decimal(rng.randint(1, 20)) / 100)
            except qm.BudgetExceeded:
                continue
            with lock:
                reserved[0] += 1
                crash = crash_after is not None and reserved[0] >= crash_after
            if crash:
                os._exit(3)  # dies holding `held`: its lease must expire
            cost = held.amount * Decimal(rng.randint(0, 10)) / 10
            budget.commit(held, cost)
            write(f"commit {cost}")

    pool = [threading.Thread(target=work, args=(hash((account, n)),)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()
    log.close()


if __name__ == "__main__":
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    args = sys.argv[1:]
    main(args[0], args[1], int(args[2]), int(args[3]), args[4],
         int(args[5]) if len(args) > 5 else None)
