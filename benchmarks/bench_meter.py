"""Overhead of the metered client: the same calls, bare and metered, to one local server.

Run:  python benchmarks/bench_meter.py
The server (tests/fake_dashscope.py) answers like DashScope on 127.0.0.1. The meter uses the
memory store for its limiter and budget and writes a JSONL log, i.e. the full pipeline.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from fake_dashscope import FakeDashScope

import qwen_meter as qm

HELLO = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "你是誰?"}]


def timed(fn, n: int) -> float:
    """Median seconds per call over n calls (after warm-up)."""
    for _ in range(20):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    import openai

    server = FakeDashScope()
    with tempfile.TemporaryDirectory() as folder:
        meter = qm.Meter(log=Path(folder) / "usage.jsonl", budget=qm.Budget("1000 CNY"),
                         limiter=qm.RateLimiter(limits={"qwen-plus": (10**9, 10**12)}))
        bare = openai.OpenAI(api_key="sk-x", base_url=server.compatible, max_retries=0)
        metered = meter.wrap(openai.OpenAI(api_key="sk-x", base_url=server.compatible))
        report = {}
        for label, kwargs in (("chat", {}), ("chat, stream", {"stream": True})):
            def call(client, kwargs=kwargs):
                result = client.chat.completions.create(model="qwen-plus", messages=HELLO,
                                                        **kwargs)
                if kwargs.get("stream"):
                    for _ in result:
                        pass

            plain = timed(lambda: call(bare), 300)
            with_meter = timed(lambda: call(metered), 300)
            report[label] = {"bare µs": round(plain * 1e6), "metered µs": round(with_meter * 1e6),
                             "overhead µs": round((with_meter - plain) * 1e6),
                             "ratio": round(with_meter / plain, 3)}
        # The pipeline alone (no HTTP): begin + finish with a usage dict.
        usage = {"prompt_tokens": 22, "completion_tokens": 16, "total_tokens": 38}
        pipeline = timed(lambda: meter.begin({"model": "qwen-plus", "messages": HELLO})
                         .finish(usage), 2000)
        report["pipeline only (begin + finish, no HTTP)"] = {"µs": round(pipeline * 1e6, 1)}
        meter.close()
    server.close()
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
