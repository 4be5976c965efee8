"""What alerts add to a metered call: the pipeline alone (begin + finish, no HTTP) with and
without an AlertObserver watching a budget, a limiter and the error rate.

Run:  python benchmarks/bench_alerts.py [--calls 5000]
Memory store, no log. The observer's receiver (a JSON webhook on 127.0.0.1) answers at once;
the budget never reaches a threshold during the timed calls, so what is measured is the
per-call cost every call pays: the observer's counting and its queue append. The checks
themselves run on the sender's thread (counted separately: checks run / calls).
Figures are medians of interleaved blocks of 100 calls, in µs per call; a shared, loaded
machine makes them noisy: compare the columns of one run.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from webhook_receiver import Receiver

from qwen_meter.alerts import AlertObserver, Channel
from qwen_meter.limits.budget.core import Budget
from qwen_meter.limits.limiter.core import RateLimiter
from qwen_meter.limits.limiter.values import RateLimit
from qwen_meter.meter.pipeline import Meter

REQUEST = {"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}],
           "max_tokens": 1}
USAGE = {"prompt_tokens": 10, "completion_tokens": 1}


def meter(observers: list) -> Meter:
    return Meter(budget=Budget("1000000 CNY", name="big"),
                 limiter=RateLimiter(limits={"qwen-plus": RateLimit(10**9, None)},
                                     smooth=False),
                 log=None, observers=observers, calibrate=False)


def block(m: Meter, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        m.begin(REQUEST).finish(dict(USAGE))
    return (time.perf_counter() - start) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    args = parser.parse_args()
    hook = Receiver()
    alerts = AlertObserver([Channel("bench", "json", hook.url)])
    plain, watched = meter([]), meter([alerts])
    block(plain, 200), block(watched, 200)  # warm up (tokenizer, catalogue)
    bare, with_alerts = [], []
    for _ in range(args.calls // 100):
        bare.append(block(plain, 100))
        with_alerts.append(block(watched, 100))
    alerts.flush(60)
    b, w = statistics.median(bare), statistics.median(with_alerts)
    print(f"pipeline alone      : {b:8.1f} µs/call")
    print(f"with AlertObserver  : {w:8.1f} µs/call  (+{w - b:.1f} µs)")
    print(f"checks run          : {alerts.sender.stats['submitted']} for "
          f"{args.calls + 200} calls (one budget or window read at most every 0.25 s)")
    print(f"alerts sent         : {len(hook.posts)}")
    alerts.close()
    hook.close()


if __name__ == "__main__":
    main()
