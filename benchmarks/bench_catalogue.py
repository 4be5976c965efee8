"""Catalogue load time and the cost of one cost computation.

Run:  python benchmarks/bench_catalogue.py
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
import timeit


def load_in_fresh_process() -> float:
    code = ("import time, qwen_meter.catalogue as c; t = time.perf_counter(); "
            "c.Catalogue.load(); print(time.perf_counter() - t)")
    runs = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                 check=True).stdout) for _ in range(5)]
    return min(runs)


def main() -> None:
    import qwen_meter as qm
    from qwen_meter.catalogue.core import Catalogue

    catalogue = Catalogue.load()
    warm = min(timeit.repeat(Catalogue.load, number=5, repeat=3)) / 5
    usage = qm.Usage(200_000, 1_000, cached_tokens=50_000, reasoning_tokens=400)
    spec = catalogue.resolve("qwen-plus")
    n = 20_000
    per_cost_spec = min(timeit.repeat(lambda: qm.cost(usage, spec, region="cn"), number=n,
                                      repeat=3)) / n
    per_cost_name = min(timeit.repeat(lambda: qm.cost(usage, "qwen-plus", region="cn"),
                                      number=n, repeat=3)) / n
    raw = {"prompt_tokens": 200_000, "completion_tokens": 1_000,
           "prompt_tokens_details": {"cached_tokens": 50_000}}
    per_cost_raw = min(timeit.repeat(lambda: qm.cost(raw, "qwen-plus", region="cn"), number=n,
                                     repeat=3)) / n
    bomb = "\n".join(["a: &a [x, x, x, x, x, x, x, x, x, x]"]
                     + [f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10)
                        + "]" for i in range(9)]
                     + ["models: {m: {family: qwen3, template: qwen3, modalities: *j}}"]).encode()
    t = time.perf_counter()
    with contextlib.suppress(qm.CatalogueError):
        Catalogue.from_bytes(bomb, "bomb.yaml")
    bomb_refused = time.perf_counter() - t
    url = "https://ws-1.eu-central-1.maas.aliyuncs.com/compatible-mode/v1"
    per_region = min(timeit.repeat(lambda: catalogue.region_for_url(url), number=n,
                                   repeat=3)) / n
    t = time.perf_counter()
    qm.estimate_cost([{"role": "user", "content": "你好"}], "qwen-plus", max_tokens=512)
    estimate_first = time.perf_counter() - t
    print(json.dumps({
        "models": len(catalogue),
        "offers": sum(len(o) for s in catalogue for o in s.offers.values()),
        "catalogue load, fresh process (ms)": round(load_in_fresh_process() * 1000, 1),
        "catalogue load, warm (ms)": round(warm * 1000, 1),
        "cost(), ModelSpec given (µs)": round(per_cost_spec * 1e6, 1),
        "cost(), model name (µs)": round(per_cost_name * 1e6, 1),
        "cost(), raw API usage dict (µs)": round(per_cost_raw * 1e6, 1),
        "first estimate_cost incl. tokenizer load (ms)": round(estimate_first * 1000, 1),
        "alias bomb (10^10 values) refused in (ms)": round(bomb_refused * 1000, 2),
        "region_for_url (µs)": round(per_region * 1e6, 2),
    }, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
