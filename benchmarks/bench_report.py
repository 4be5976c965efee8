"""Reports over 1M / 10M usage records *with cache hits* (as real Qwen traffic has), side by side
with DuckDB and polars doing the same group-by (calls, tokens, exact cost per model, day and
currency) on the same file.

Run:  pip install ".[bench,reports]"
      python benchmarks/bench_report.py --records 1000000 [--log /tmp/usage-1m.jsonl]
Each contender runs in a fresh process (time, CPU time of all its threads and peak RSS from
/proc, imports included), in turn, for --rounds rounds (default 3): a burst of load from
elsewhere hits them alike. Printed: the median per contender, and qwen_meter's CLI and API as
a multiple of DuckDB's (the median of the per-round ratios: time, peak memory, CPU time).
A log is generated once (about 0.6 GB per 1M records) at --log and reused on later runs; keep it
out of the repository.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

MODELS = ["qwen-plus", "qwen-flash", "qwen-max", "qwen3-max", "qwen-turbo"]
PICO = 10**12


def _rates(model: str) -> list[tuple[int, int | None, int, int, int]]:
    """(above, upto, input, output, cache hit) per tier in pico units per token, for cn."""
    import qwen_meter as qm

    offer = qm.resolve(model).offer("cn")
    out = []
    for tier in offer.tiers:
        hit = tier.cache_hit if tier.cache_hit is not None \
            else tier.input * offer.cache.implicit_hit
        out.append((tier.above, tier.upto, int(tier.input * 10**6), int(tier.output * 10**6),
                    int(hit * 10**6)))
    return out


def generate(path: Path, n: int) -> None:
    """``n`` records: a third with cache hits, several tags, users, models; exact costs."""
    rng = random.Random(7)
    rates = {m: _rates(m) for m in MODELS}
    start = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    step = 25 if n <= 1_000_000 else 3
    with path.open("w", encoding="utf-8") as handle:
        lines = []
        for i in range(n):
            model = rng.choice(MODELS)
            prompt, completion = rng.randint(20, 20_000), rng.randint(1, 2_000)
            cached = rng.choice((0, 0, prompt // 2))
            tier = next(t for t in rates[model] if t[1] is None or prompt <= t[1])
            pico = (prompt - cached) * tier[2] + cached * tier[4] + completion * tier[3]
            cost = str(Decimal(pico) / PICO)
            when = (start + dt.timedelta(seconds=i * step)).isoformat()
            lines.append(json.dumps({
                "model": model, "id": f"{i:032x}", "time": when, "version": 1,
                "region": "cn", "endpoint": "chat", "status": "ok", "prompt_tokens": prompt,
                "completion_tokens": completion, "total_tokens": prompt + completion,
                "cached_tokens": cached, "reasoning_tokens": 0, "usage_estimated": False,
                "estimated_prompt_tokens": prompt, "cost": cost, "currency": "CNY",
                "tags": [f"team={rng.choice('abcd')}"], "user": f"user{rng.randint(1, 50)}"},
                separators=(",", ":")))
            if len(lines) >= 100_000:
                handle.write("\n".join(lines) + "\n")
                lines = []
        if lines:
            handle.write("\n".join(lines) + "\n")


CONTENDERS = {
    "qwen_meter report CLI (--by model,day, every section)": """
import contextlib, io
from qwen_meter.cli import main
with contextlib.redirect_stdout(io.StringIO()) as out:
    main(["report", PATH, "--by", "model,day", "--tz", "UTC"])
rows = out.getvalue().count("\\n")
""",
    "qwen_meter API (load_usage + build_report)": """
from qwen_meter.report import build_report, load_usage
report = build_report(load_usage(PATH, tz="UTC"), by=["model", "day"])
rows = len(report.breakdown)
""",
    "duckdb (read_json + GROUP BY, decimal cost)": """
import duckdb
out = duckdb.sql(f'''SELECT model, substr(CAST(time AS VARCHAR), 1, 10) AS day, currency,
    count(*), sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens),
    sum(CAST(cost AS DECIMAL(38, 18)))
    FROM read_json('{PATH}', format='newline_delimited') GROUP BY ALL''').fetchall()
rows = len(out)
""",
    "polars (scan_ndjson + group_by, decimal cost)": """
import polars as pl
out = (pl.scan_ndjson(PATH, infer_schema_length=1000)
       .with_columns(pl.col("time").str.slice(0, 10).alias("day"),
                     pl.col("cost").cast(pl.Decimal(38, 18)))
       .group_by(["model", "day", "currency"])
       .agg(pl.len(), pl.col("prompt_tokens").sum(), pl.col("completion_tokens").sum(),
            pl.col("cached_tokens").sum(), pl.col("cost").sum())).collect()
rows = out.height
""",
}

PROBE = """
import resource, time
start = time.perf_counter()
used = resource.getrusage(resource.RUSAGE_SELF)
PATH = {path!r}
{body}
elapsed = time.perf_counter() - start
now = resource.getrusage(resource.RUSAGE_SELF)
cpu = now.ru_utime + now.ru_stime - used.ru_utime - used.ru_stime
hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]
print(elapsed, int(hwm.split()[1]) / 1024, rows, cpu)
"""
#: What is compared: wall time, peak memory, and CPU time (every thread's), which a burst of
#: load from elsewhere changes far less than wall time.
MEASURES = ("seconds", "peak RSS MB", "CPU seconds")


def run(body: str, path: Path) -> dict[str, object]:
    # This checkout's qwen_meter, not an installed one.
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    result = subprocess.run([sys.executable, "-c", PROBE.format(path=str(path), body=body)],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0:
        return {"error": (result.stderr.strip().splitlines() or ["?"])[-1][:200]}
    seconds, rss, rows, cpu = result.stdout.strip().splitlines()[-1].split()
    return {"seconds": round(float(seconds), 2), "peak RSS MB": round(float(rss)),
            "CPU seconds": round(float(cpu), 2), "rows": int(rows)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--log", help="the log to use (generated there if missing; default "
                                      "/tmp/qwen-meter-bench-<records>.jsonl)")
    parser.add_argument("--only", help="run only contenders whose name contains this (several: "
                                       "'CLI|API|duckdb')")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    path = Path(args.log or f"/tmp/qwen-meter-bench-{args.records}.jsonl")
    if not path.exists():
        generate(path, args.records)
    wanted = args.only.split("|") if args.only else []
    names = [n for n in CONTENDERS if not wanted or any(w in n for w in wanted)]
    runs: dict[str, list[dict[str, object]]] = {n: [] for n in names}
    for _ in range(args.rounds):
        for name in names:
            runs[name].append(run(CONTENDERS[name], path))
    results: dict[str, object] = {n: _median(r) for n, r in runs.items()}
    duck = next((n for n in names if n.startswith("duckdb")), None)
    if duck:
        for name in names:
            if name.startswith("qwen_meter"):
                results[f"{name} ÷ duckdb"] = _ratios(runs[name], runs[duck])
    print(json.dumps({"records": args.records, "file MB": round(path.stat().st_size / 1e6),
                      "cpus": os.cpu_count(), "rounds": args.rounds,
                      "load average": Path("/proc/loadavg").read_text().split()[:3]
                      if Path("/proc/loadavg").exists() else None,
                      "results": results}, indent=2, ensure_ascii=False))


def _median(rows: list[dict[str, object]]) -> dict[str, object]:
    good = [r for r in rows if "error" not in r]
    if not good:
        return rows[0]
    return {key: statistics.median(float(r[key]) for r in good)  # type: ignore[arg-type]
            for key in MEASURES} | {"rows": good[0]["rows"]}


def _ratios(mine: list[dict[str, object]], duck: list[dict[str, object]]) -> dict[str, float]:
    pairs = [(a, b) for a, b in zip(mine, duck, strict=True)
             if "error" not in a and "error" not in b]
    if not pairs:
        return {}
    return {key: round(statistics.median(float(a[key]) / float(b[key])  # type: ignore[arg-type]
                                         for a, b in pairs), 2)
            for key in MEASURES}


if __name__ == "__main__":
    main()
