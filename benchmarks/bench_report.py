"""A report over 1,000,000 usage records, side by side with plain pandas, polars and duckdb doing
the same aggregation (tokens and exact cost per model, day and currency) on the same file.

Run:  pip install ".[bench,reports]"; python benchmarks/bench_report.py [--records N]
Each contender runs in a fresh process (time and peak RSS from /proc); best of 3 runs.
The log is generated once into a temporary folder (about 0.5 GB for 1M records).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

MODELS = ["qwen-plus", "qwen-flash", "qwen-max", "qwen3-max", "qwen-turbo"]


def generate(path: Path, n: int) -> None:
    import qwen_meter as qm

    rng = random.Random(7)
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    prices = {}
    with path.open("w", encoding="utf-8") as handle:
        for i in range(n):
            model = rng.choice(MODELS)
            prompt, completion = rng.randint(20, 20_000), rng.randint(1, 2_000)
            key = (model, prompt // 20_000)
            if key not in prices:
                prices[key] = qm.cost(qm.Usage(prompt, 0), model)
            price = qm.cost(qm.Usage(prompt, completion), model)
            record = qm.UsageRecord(
                model=model, region="cn", currency="CNY", prompt_tokens=prompt,
                completion_tokens=completion, total_tokens=prompt + completion,
                cost=f"{price.amount:f}", estimated_prompt_tokens=prompt,
                time=(start + dt.timedelta(seconds=i * 25)).isoformat(),
                tags=(f"team={rng.choice('abcd')}",), user=f"user{rng.randint(1, 50)}")
            handle.write(record.to_json() + "\n")


CONTENDERS = {
    "qwen_meter report": """
from qwen_meter.report import build_report, load_usage
report = build_report(load_usage(PATH), by=["model", "day"])
rows = len(report.breakdown)
""",
    "pandas (read_json lines + groupby, float cost)": """
import pandas as pd
frame = pd.read_json(PATH, lines=True, dtype={"cost": "float64"})
frame["day"] = pd.to_datetime(frame["time"], utc=True).dt.strftime("%Y-%m-%d")
out = frame.groupby(["model", "day", "currency"])[["prompt_tokens", "completion_tokens",
                                                     "cost"]].sum()
rows = len(out)
""",
    "polars (read_ndjson + group_by, decimal cost)": """
import polars as pl
frame = pl.read_ndjson(PATH, infer_schema_length=1000)
out = (frame.with_columns(pl.col("time").str.slice(0, 10).alias("day"),
                          pl.col("cost").cast(pl.Decimal(30, 12)))
       .group_by(["model", "day", "currency"])
       .agg(pl.col("prompt_tokens").sum(), pl.col("completion_tokens").sum(),
            pl.col("cost").sum()))
rows = out.height
""",
    "duckdb (read_json + GROUP BY, decimal cost)": """
import duckdb
out = duckdb.sql(f'''SELECT model, substr(CAST(time AS VARCHAR), 1, 10) AS day, currency,
    sum(prompt_tokens), sum(completion_tokens), sum(CAST(cost AS DECIMAL(30, 12)))
    FROM read_json('{PATH}', format='newline_delimited') GROUP BY ALL''').fetchall()
rows = len(out)
""",
}

PROBE = """
import time
start = time.perf_counter()
PATH = {path!r}
{body}
elapsed = time.perf_counter() - start
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
print(elapsed, int(hwm.split()[1]) / 1024, rows)
"""


def run(name: str, body: str, path: Path) -> dict[str, object]:
    best = None
    for _ in range(3):
        result = subprocess.run([sys.executable, "-c", PROBE.format(path=str(path), body=body)],
                                capture_output=True, text=True)
        if result.returncode != 0:
            return {"error": result.stderr.strip().splitlines()[-1][:200]}
        seconds, rss, rows = result.stdout.split()
        if best is None or float(seconds) < best["seconds"]:
            best = {"seconds": round(float(seconds), 2), "peak RSS MB": round(float(rss)),
                    "groups": int(rows)}
    return best or {}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--log", help="reuse an existing log file instead of generating one")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(args.log) if args.log else Path(folder) / "usage.jsonl"
        if not args.log:
            generate(path, args.records)
        results = {name: run(name, body, path) for name, body in CONTENDERS.items()}
        print(json.dumps({"records": args.records, "file MB": round(path.stat().st_size / 1e6),
                          "cpus": os.cpu_count(), "results": results}, indent=2))


if __name__ == "__main__":
    main()
