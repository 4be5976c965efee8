"""The dashboard over a 1M-record usage log: the load (records read, checked, into DuckDB),
the first paint (the page's first API set: meta, overview, series, top), and each filter
change (the same set with one more filter), beside `qwen-meter report` on the same log.

Run:  pip install ".[bench,reports]"
      python benchmarks/bench_dashboard.py --records 1000000 [--log /tmp/dash-1m.jsonl]
The log is generated once at --log (about 0.4 GB per 1M records) and reused; keep it out of the
repository. Times are medians of --rounds rounds (each answer computed afresh: the app's answer
cache is cleared between rounds), printed in ms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

MODELS = ["qwen-plus", "qwen-flash", "qwen-max", "qwen3-max", "qwen-turbo"]
USERS = [f"用户{i:02d}" for i in range(40)] + [f"user{i:02d}" for i in range(20)]
FEATURES = ["智能客服", "翻译", "搜索", "摘要", "代码助手", "审核"]
KEYS = [f"team-{i}" for i in range(12)]
STATUSES = ["ok"] * 40 + ["error", "refused", "cancelled", "lost"]


def generate(path: Path, n: int) -> None:
    """``n`` records over the 60 days before now: keys, users, Chinese tags, problems."""
    rng = random.Random(25)
    end = dt.datetime.now(dt.timezone.utc)
    start = end - dt.timedelta(days=60)
    step = (end - start) / n
    with path.open("w", encoding="utf-8") as handle:
        lines = []
        for i in range(n):
            status = rng.choice(STATUSES)
            prompt, completion = rng.randint(20, 20_000), rng.randint(1, 2_000)
            billed = status not in ("error", "refused")
            cost = f"{(prompt * 8 + completion * 20) / 10**7:.7f}"
            intl = rng.random() < 0.1
            record = {
                "version": 1, "id": f"r{i:08d}", "time": (start + step * i).isoformat(),
                "model": rng.choice(MODELS), "region": "intl" if intl else "cn",
                "endpoint": "chat", "status": status,
                "prompt_tokens": prompt if billed else 0,
                "completion_tokens": completion if billed else 0,
                "cached_tokens": rng.choice((0, 0, prompt // 2)) if billed else 0,
                "reasoning_tokens": 0, "usage_estimated": status in ("cancelled", "lost"),
                "cost": cost if billed else None,
                "currency": ("USD" if intl else "CNY") if billed else None,
                "latency_ms": rng.randint(100, 9000),
                "tags": [f"key={rng.choice(KEYS)}", f"feature={rng.choice(FEATURES)}"],
                "user": rng.choice(USERS)}
            lines.append(json.dumps(record, ensure_ascii=False))
            if len(lines) >= 50_000:
                handle.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            handle.write("\n".join(lines) + "\n")


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.1f} ms"


def first_paint(views: object, params: dict[str, list[str]]) -> float:
    """The page's first set of answers; returns the slowest answer's time."""
    answer = views.answer  # type: ignore[attr-defined]
    slowest = 0.0
    for name, extra in (("meta", {}), ("overview", {}),
                        ("series", {"metric": ["cost"], "by": ["model"], "bucket": ["day"]}),
                        ("top", {"by": ["model"]})):
        began = time.perf_counter()
        answer(name, {**params, **extra})
        slowest = max(slowest, time.perf_counter() - began)
    return slowest


def timed(views: object, params: dict[str, list[str]], rounds: int) -> str:
    """'<set> ms  (slowest answer <n> ms)', medians over ``rounds``."""
    times, slowest = [], []
    for _ in range(rounds):
        views._cache.clear()  # type: ignore[attr-defined]
        began = time.perf_counter()
        slowest.append(first_paint(views, params))
        times.append(time.perf_counter() - began)
    return (f"{_ms(statistics.median(times))}  (slowest answer "
            f"{statistics.median(slowest) * 1000:.0f} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--log", default="/tmp/qwen-meter-dash-1m.jsonl")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--tz", default="Asia/Shanghai")
    args = parser.parse_args()
    log = Path(args.log)
    if not log.exists():
        print(f"generating {args.records:,} records at {log} ...", file=sys.stderr)
        generate(log, args.records)
    from qwen_meter.report.views import open_views

    began = time.perf_counter()
    views = open_views(log, tz=args.tz)
    load = time.perf_counter() - began
    records = views.records.db.execute("SELECT count(*) FROM records").fetchall()[0][0]
    print(f"records {records:,}, {log.stat().st_size / 1e6:.0f} MB, money summed from "
          f"{views.records.cost_column}")
    print(f"load (read, check, into DuckDB)         {_ms(load)}")
    base = {"tz": [args.tz]}
    print(f"first paint (meta+overview+series+top)  {timed(views, base, args.rounds)}")
    changes = {"model=qwen-plus": {"model": ["qwen-plus"]},
               "user=用户07": {"user": ["用户07"]},
               "tag=feature=智能客服": {"tag": ["feature=智能客服"]},
               "key=team-3": {"key": ["team-3"]},
               "status=error": {"status": ["error"]},
               "since=last 7 days": {"since": [(dt.date.today() - dt.timedelta(days=7))
                                               .isoformat()]},
               "by hour, 3 days": {"since": [(dt.date.today() - dt.timedelta(days=3))
                                             .isoformat()]}}
    for label, extra in changes.items():
        params = {**base, **extra}
        print(f"filter change {label:<25} {timed(views, params, args.rounds)}")
    for name, params in (("calls (drill-down, 100 rows)", {**base, "model": ["qwen-max"]}),
                         ("series by tag, hourly", {**base, "by": ["tag"],
                                                    "bucket": ["hour"]})):
        view = "calls" if name.startswith("calls") else "series"
        times = []
        for _ in range(args.rounds):
            views._cache.clear()
            began = time.perf_counter()
            views.answer(view, params)
            times.append(time.perf_counter() - began)
        print(f"{name:<39} {_ms(statistics.median(times))}")
    before = views.records._rid
    with log.open("a", encoding="utf-8") as handle:
        handle.write(json.dumps({"model": "qwen-plus", "time": dt.datetime.now(
            dt.timezone.utc).isoformat(), "prompt_tokens": 1, "completion_tokens": 1,
            "cost": "0.0001", "currency": "CNY"}) + "\n")
    began = time.perf_counter()
    views.refresh()
    print(f"live refresh (1 appended record)        {_ms(time.perf_counter() - began)}"
          f"  (+{views.records._rid - before})")
    views.records.close()
    began = time.perf_counter()
    subprocess.run([sys.executable, "-m", "qwen_meter", "report", str(log), "--tz", args.tz,
                    "-q"], check=True, capture_output=True)
    print(f"qwen-meter report (same log, CLI)       {_ms(time.perf_counter() - began)}")


if __name__ == "__main__":
    main()
