"""The meter's own cost per call, next to the bare client's, and the event loop under waiting.

Run:  python benchmarks/bench_meter.py [--calls 200]
      python benchmarks/bench_meter.py --paired   (metered ÷ bare only: interleaved batches,
                                                   median of per-batch ratios, wall and CPU)
      python benchmarks/bench_meter.py --layers   (what the log, the budget and the limiter
                                                   each add to a sync call, thread CPU)
      python benchmarks/bench_meter.py --pipeline (the pipeline alone ÷ the sum of its parts,
                                                   and async ÷ sync pipeline: interleaved
                                                   batches, thread CPU, median of ratios)
The server (qwen_meter.testing) answers like DashScope on 127.0.0.1, in this process. The
meter uses the memory store for its limiter and budget and writes a JSONL log: the full
pipeline. Figures, in one run:

* sync and async openai clients, plain and streamed: median µs per call bare and metered;
* the pipeline alone (begin + finish, no HTTP), sync and async;
* where a sync metered call's extra time goes: bare call, metered call and the pipeline alone
  interleaved call by call (paired medians), the rest being the httpx adapter's own work;
* the largest event-loop stall (a 20 ms heartbeat's worst gap) while 50 AsyncOpenAI calls
  wait on an RPM-limited limiter (15 calls a second), metered, next to the bare client doing
  the same 50 calls with no limiter.

Figures measured on a shared, loaded machine are noisy: compare the columns of one run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import qwen_meter as qm
from qwen_meter.testing.dashscope import FakeDashScope


def using_orjson() -> bool | None:
    """Whether orjson encodes the log lines (None: a version of the library before it could,
    for before/after runs of this script)."""
    try:
        from qwen_meter.meter.jsonline import using_orjson as used
    except ImportError:
        return None
    return used()


HELLO = [{"role": "system", "content": "You are a helpful assistant."},
         {"role": "user", "content": "你是誰?"}]
USAGE = {"prompt_tokens": 22, "completion_tokens": 16, "total_tokens": 38}


def timed(fn: Callable[[], Any], n: int) -> float:
    """Median seconds per call over n calls (after warm-up)."""
    for _ in range(min(20, n)):
        fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


async def atimed(fn: Callable[[], Awaitable[Any]], n: int) -> float:
    for _ in range(min(20, n)):
        await fn()
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        await fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def row(plain: float, metered: float) -> dict[str, Any]:
    return {"bare µs": round(plain * 1e6), "metered µs": round(metered * 1e6),
            "overhead µs": round((metered - plain) * 1e6), "ratio": round(metered / plain, 3)}


async def stall(client: Any, calls: int = 50) -> tuple[float, float]:
    """(worst heartbeat gap beyond its 20 ms, seconds) while ``calls`` calls run at once."""
    await client.chat.completions.create(model="qwen-plus", messages=HELLO)  # warm
    gc.collect()
    gc.freeze()  # the process's own full collections are not the meter's stalls
    gaps: list[float] = []
    done = asyncio.Event()

    async def heartbeat() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.02)
            now = time.perf_counter()
            gaps.append(now - last - 0.02)
            last = now

    started = time.perf_counter()
    running = asyncio.gather(*(client.chat.completions.create(model="qwen-plus",
                                                              messages=HELLO)
                               for _ in range(calls)))
    await asyncio.sleep(0.3)  # past the SDK building all requests at once (bare or not)
    beat = asyncio.create_task(heartbeat())
    await running
    elapsed = time.perf_counter() - started
    done.set()
    await beat
    gc.unfreeze()
    # The calls can all finish within the 0.3 s before the heartbeat starts: no stall seen.
    return max(gaps, default=0.0), elapsed


def part_calls(folder: str) -> tuple[dict[str, Callable[[], Any]], Callable[[], None]]:
    """Each part of the pipeline through its public API, alone, on the same request: the
    "sum of its parts" the pipeline is compared with; and what closes them. The JSONL log's
    two lines per call (the journal's intent before sending, the record after) are two parts:
    the pipeline writes both."""
    usage_log = qm.JsonlLog(Path(folder) / "parts.jsonl")
    budget = qm.Budget("1000 CNY")
    limiter = qm.RateLimiter(limits={"qwen-plus": (10**9, 10**12)})
    prompt = qm.count_messages(HELLO, "qwen-plus").tokens
    estimate = qm.estimate_cost(prompt, "qwen-plus", region="cn")
    cost = qm.cost(USAGE, "qwen-plus", region="cn")

    def hold() -> None:
        budget.commit(budget.reserve(estimate), cost)

    def limit() -> None:
        limiter.reconcile(limiter.acquire("qwen-plus", prompt + 1000), USAGE["total_tokens"])

    def record() -> None:
        usage_log.append(qm.UsageRecord(model="qwen-plus", prompt_tokens=22,
                                        completion_tokens=16, total_tokens=38, cost="0.0001",
                                        currency="CNY"))

    intent = {"journal": "intent", "model": "qwen-plus", "id": "",
              "time": "2026-12-08T00:00:00+00:00", "version": 1, "status": "pending",
              "region": "cn", "endpoint": "chat", "stream": False,
              "estimated_prompt_tokens": 22, "estimate_exact": True,
              "estimated_cost_low": "0.0000176", "estimated_cost_high": "0.0655536",
              "currency": "CNY", "tokens_reserved": 32790, "tags": [], "user": None,
              "metadata": {}, "holds": [], "permit": None, "writer": {"pid": 1}}

    return {"count_messages": lambda: qm.count_messages(HELLO, "qwen-plus"),
            "estimate_cost": lambda: qm.estimate_cost(prompt, "qwen-plus", region="cn"),
            "budget reserve + commit": hold,
            "limiter acquire + reconcile": limit,
            "Usage.parse + cost": lambda: qm.cost(qm.Usage.parse(USAGE), "qwen-plus",
                                                  region="cn"),
            "log append_intent (journal, intent built)": lambda: usage_log.append_intent(
                {**intent, "id": uuid.uuid4().hex}),
            "log append (record built)": record}, usage_log.close


def parts_alone(folder: str, n: int) -> dict[str, float]:
    """Each part alone (:func:`part_calls`), median seconds each."""
    calls, close = part_calls(folder)
    out = {name: timed(fn, n) for name, fn in calls.items()}
    close()
    return out


def pipeline_ratios(batches: int = 30, size: int = 50) -> dict[str, Any]:
    """Target 1's two pipeline ratios, measured side by side: in each of ``batches`` rounds,
    ``size`` sync pipelines (begin + finish, no HTTP), ``size`` runs of each part alone
    (:func:`part_calls`) and ``size`` async pipelines (begin_async + finish_async, on one
    event loop), each timed in the calling thread's CPU (time preempted by other processes
    is not counted); the medians of the per-round ratios."""
    import os

    with tempfile.TemporaryDirectory() as folder:
        meter = qm.Meter(log=Path(folder) / "usage.jsonl", budget=qm.Budget("1000000 CNY"),
                         limiter=qm.RateLimiter(limits={"qwen-plus": (10**9, 10**12)}))
        calls, close = part_calls(folder)
        loop = asyncio.new_event_loop()

        def sync_pipeline() -> None:
            meter.begin({"model": "qwen-plus", "messages": HELLO}).finish(USAGE)

        async def async_pipelines() -> None:
            for _ in range(size):
                call = await meter.begin_async({"model": "qwen-plus", "messages": HELLO})
                await call.finish_async(USAGE)

        def batch(fn: Callable[[], Any]) -> float:
            start = time.thread_time()
            for _ in range(size):
                fn()
            return (time.thread_time() - start) / size

        rows: list[tuple[float, dict[str, float], float]] = []
        for i in range(batches + 2):  # the first two rounds warm up and are dropped
            pipeline = batch(sync_pipeline)
            parts = {name: batch(fn) for name, fn in calls.items()}
            start = time.thread_time()
            loop.run_until_complete(async_pipelines())
            async_pipeline = (time.thread_time() - start) / size
            if i >= 2:
                rows.append((pipeline, parts, async_pipeline))
        loop.close()
        close()
        meter.close()

    def median_us(values: Any) -> float:
        return round(statistics.median(values) * 1e6, 1)

    return {
        "sync pipeline µs (median)": median_us(r[0] for r in rows),
        "async pipeline µs (median)": median_us(r[2] for r in rows),
        "parts alone µs (median)": {name: median_us(r[1][name] for r in rows)
                                    for name in rows[0][1]},
        "sum of the parts µs (median)": median_us(sum(r[1].values()) for r in rows),
        "pipeline ÷ sum of its parts, sync (≤ 1.3; median of paired rounds)": round(
            statistics.median(r[0] / sum(r[1].values()) for r in rows), 3),
        "async pipeline ÷ sync pipeline (≤ 1.2; median of paired rounds)": round(
            statistics.median(r[2] / r[0] for r in rows), 3),
        "orjson encodes the log lines": using_orjson(),
        "load average": [round(x, 2) for x in os.getloadavg()]}


def split(bare: Any, metered: Any, meter: qm.Meter, n: int) -> dict[str, float]:
    """Bare call, metered call and the pipeline alone, one after the other in each round: the
    pipeline then runs with the caches as cold as in a real call (a tight loop of it alone
    keeps them warm and reads about half as much). The paired medians say what the metered
    call adds, how much of that the pipeline is, and what is left for the httpx adapter."""
    def call(client: Any) -> None:
        client.chat.completions.create(model="qwen-plus", messages=HELLO)

    def pipeline() -> None:
        meter.begin({"model": "qwen-plus", "messages": HELLO}).finish(USAGE)

    for _ in range(min(20, n)):
        call(bare)
        call(metered)
        pipeline()
    bare_s, added, alone = [], [], []
    for _ in range(n):
        start = time.perf_counter()
        call(bare)
        middle = time.perf_counter()
        call(metered)
        end = time.perf_counter()
        pipeline()
        alone.append(time.perf_counter() - end)
        bare_s.append(middle - start)
        added.append((end - middle) - (middle - start))
    medians = [statistics.median(x) * 1e6 for x in (bare_s, added, alone)]
    return {"bare µs": round(medians[0]), "metered − bare µs (paired)": round(medians[1]),
            "pipeline alone, interleaved µs": round(medians[2]),
            "adapter ≈ metered − bare − pipeline µs": round(medians[1] - medians[2])}


def paired(batches: int = 40, size: int = 20) -> dict[str, Any]:
    """Metered ÷ bare, sync and async chat, in ``batches`` interleaved batches of ``size``
    calls each (bare, then metered), so a burst of load from elsewhere hits both alike: the
    medians of the per-batch ratios in wall time, in this process's CPU time (server thread
    included: the stand-in shares the process) and in the calling thread's CPU time (the
    client's and the meter's own work alone). On a shared machine the CPU ratios are the
    steadier: time spent preempted is not counted."""
    import os

    import openai

    def ratios(times: dict[str, list[tuple[float, float, float]]]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for i, what in enumerate(("wall", "process CPU", "calling thread CPU")):
            out[f"bare µs ({what}, median)"] = round(statistics.median(
                t[i] for t in times["bare"]) * 1e6 / size)
            out[f"metered µs ({what}, median)"] = round(statistics.median(
                t[i] for t in times["metered"]) * 1e6 / size)
            out[f"metered ÷ bare ({what}, median of paired batches)"] = round(
                statistics.median(m[i] / b[i] for b, m in zip(times["bare"], times["metered"],
                                                             strict=True) if b[i] > 0), 3)
        return out

    def clocks() -> tuple[float, float, float]:
        return time.perf_counter(), time.process_time(), time.thread_time()

    server = FakeDashScope()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        meter = qm.Meter(log=Path(folder) / "usage.jsonl", budget=qm.Budget("1000 CNY"),
                         limiter=qm.RateLimiter(limits={"qwen-plus": (10**9, 10**12)}))
        bare = openai.OpenAI(api_key="sk-x", base_url=server.compatible, max_retries=0)
        clients = {"bare": bare, "metered": meter.wrap(bare)}
        times: dict[str, list[tuple[float, float, float]]] = {"bare": [], "metered": []}
        for _ in range(batches + 2):  # the first two rounds warm both up and are dropped
            for name, client in clients.items():
                start = clocks()
                for _ in range(size):
                    client.chat.completions.create(model="qwen-plus", messages=HELLO)
                end = clocks()
                times[name].append(tuple(e - s for e, s in zip(end, start, strict=True)))
        report["sync chat"] = ratios({k: v[2:] for k, v in times.items()})

        async def async_rows() -> None:
            abare = openai.AsyncOpenAI(api_key="sk-x", base_url=server.compatible,
                                       max_retries=0)
            aclients = {"bare": abare, "metered": meter.wrap(abare)}
            atimes: dict[str, list[tuple[float, float, float]]] = {"bare": [], "metered": []}
            for _ in range(batches + 2):
                for name, client in aclients.items():
                    start = clocks()
                    for _ in range(size):
                        await client.chat.completions.create(model="qwen-plus",
                                                             messages=HELLO)
                    end = clocks()
                    atimes[name].append(tuple(e - s for e, s in zip(end, start, strict=True)))
            report["async chat"] = ratios({k: v[2:] for k, v in atimes.items()})

        asyncio.run(async_rows())
        meter.close()
    server.close()
    report["load average"] = [round(x, 2) for x in os.getloadavg()]
    return report


def layers(calls: int = 400) -> dict[str, Any]:
    """What each part of the benchmark's meter adds to a sync call, in the calling thread's
    CPU time: four meters — no log, budget or limiter; + the JSONL log; + a budget; + the
    memory limiter — each call paired with a bare call just before it and followed by that
    meter's pipeline alone (begin + finish, no HTTP), all interleaved so every part runs with
    the caches as cold as in a real call. Medians of the per-call differences."""
    import os

    import openai

    server = FakeDashScope()
    bare = openai.OpenAI(api_key="sk-x", base_url=server.compatible, max_retries=0)
    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        meters = {
            "Meter(log=None)": qm.Meter(log=None),
            "+ JSONL log": qm.Meter(log=where / "a.jsonl"),
            "+ budget": qm.Meter(log=where / "b.jsonl", budget=qm.Budget("1000 CNY")),
            "+ memory limiter": qm.Meter(log=where / "c.jsonl", budget=qm.Budget("1000 CNY"),
                                         limiter=qm.RateLimiter(
                                             limits={"qwen-plus": (10**9, 10**12)}))}
        wrapped = {name: meter.wrap(bare) for name, meter in meters.items()}
        added: dict[str, list[float]] = {name: [] for name in meters}
        alone: dict[str, list[float]] = {name: [] for name in meters}
        clock = time.thread_time
        for i in range(calls + 30):  # the first 30 rounds warm up and are dropped
            for name, meter in meters.items():
                start = clock()
                bare.chat.completions.create(model="qwen-plus", messages=HELLO)
                middle = clock()
                wrapped[name].chat.completions.create(model="qwen-plus", messages=HELLO)
                end = clock()
                meter.begin({"model": "qwen-plus", "messages": HELLO}).finish(USAGE)
                if i >= 30:
                    added[name].append((end - middle) - (middle - start))
                    alone[name].append(clock() - end)
        for meter in meters.values():
            meter.close()
    server.close()
    report: dict[str, Any] = {
        name: {"metered − bare µs": round(statistics.median(added[name]) * 1e6),
               "pipeline alone µs": round(statistics.median(alone[name]) * 1e6)}
        for name in meters}
    report["load average"] = [round(x, 2) for x in os.getloadavg()]
    return report


FIRST_CALL = """
import asyncio, json, sys, tempfile, time
from pathlib import Path
import openai
import qwen_meter as qm
from qwen_meter.meter.jsonline import using_orjson
from qwen_meter.testing.dashscope import FakeDashScope

server = FakeDashScope()
meter = qm.Meter(log=Path(tempfile.mkdtemp()) / "usage.jsonl", budget=qm.Budget("10 CNY"),
                 limiter=qm.RateLimiter(limits={"qwen-plus": (1000, 10**9)}))
client = openai.AsyncOpenAI(api_key="sk-x", base_url=server.compatible)
if sys.argv[1] == "metered":
    client = meter.wrap(client)

async def main():
    gaps, done = [], asyncio.Event()
    async def heartbeat():
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.005)
            now = time.perf_counter()
            gaps.append(now - last - 0.005)
            last = now
    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.05)
    started = time.perf_counter()
    await client.chat.completions.create(model="qwen-plus",
                                         messages=[{"role": "user", "content": "hi"}])
    first = time.perf_counter() - started
    done.set()
    await beat
    return max(gaps), first

stall, first = asyncio.run(main())
print(json.dumps([stall, first]))
server.close()
"""


def first_call(runs: int = 3) -> dict[str, Any]:
    """A fresh process, no warm-up: the loop's largest stall (5 ms heartbeat) during the first
    AsyncOpenAI call, and that call's latency; metered and bare (the SDK's own first call
    builds its response models on the loop), in turn."""
    import os
    import subprocess

    results: dict[str, list[Any]] = {"metered": [], "bare": []}
    for _ in range(runs):
        for kind in results:
            out = subprocess.run([sys.executable, "-c", FIRST_CALL, kind], capture_output=True,
                                 text=True, check=True,
                                 env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
            results[kind].append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {f"{kind}: {what}": [round(r[i] * 1000, 1) for r in rows]
            for kind, rows in results.items()
            for i, what in enumerate(("largest loop stall ms", "first call ms"))}


def main() -> None:
    import openai

    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--paired", action="store_true",
                        help="only metered ÷ bare in interleaved batches (wall and CPU)")
    parser.add_argument("--layers", action="store_true",
                        help="only what each part of the meter adds to a sync call (CPU)")
    parser.add_argument("--pipeline", action="store_true",
                        help="only pipeline ÷ sum of its parts and async ÷ sync pipeline")
    args = parser.parse_args()
    if args.pipeline:
        print(json.dumps(pipeline_ratios(), indent=2, ensure_ascii=False))
        return
    if args.layers:
        print(json.dumps(layers(), indent=2, ensure_ascii=False))
        return
    if args.paired:
        print(json.dumps(paired(), indent=2, ensure_ascii=False))
        return
    n = args.calls
    server = FakeDashScope()
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        def new_meter(**options: Any) -> qm.Meter:
            options.setdefault("limiter", qm.RateLimiter(limits={"qwen-plus": (10**9, 10**12)}))
            return qm.Meter(log=Path(folder) / "usage.jsonl", budget=qm.Budget("1000 CNY"),
                            **options)

        meter = new_meter()
        bare = openai.OpenAI(api_key="sk-x", base_url=server.compatible, max_retries=0)
        metered = meter.wrap(bare)
        for label, stream in (("sync chat", False), ("sync chat, stream", True)):
            def call(client: Any, stream: bool = stream) -> None:
                result = client.chat.completions.create(model="qwen-plus", messages=HELLO,
                                                        stream=stream)
                if stream:
                    for _ in result:
                        pass

            report[label] = row(timed(lambda: call(bare), n), timed(lambda: call(metered), n))
        report["sync chat, interleaved: where the extra time goes"] = split(bare, metered,
                                                                              meter, n * 2)

        async def async_rows() -> None:
            abare = openai.AsyncOpenAI(api_key="sk-x", base_url=server.compatible,
                                       max_retries=0)
            ametered = meter.wrap(abare)
            for label, stream in (("async chat", False), ("async chat, stream", True)):
                async def acall(client: Any, stream: bool = stream) -> None:
                    result = await client.chat.completions.create(model="qwen-plus",
                                                                  messages=HELLO, stream=stream)
                    if stream:
                        async for _ in result:
                            pass

                plain = await atimed(lambda: acall(abare), n)
                report[label] = row(plain, await atimed(lambda: acall(ametered), n))

            async def pipeline_async() -> None:
                call = await meter.begin_async({"model": "qwen-plus", "messages": HELLO})
                await call.finish_async(USAGE)

            report["pipeline only, async (begin_async + finish_async)"] = {
                "µs": round(await atimed(pipeline_async, n * 5) * 1e6, 1)}

        asyncio.run(async_rows())
        # The sync pipeline and its parts measured alone, in turn, three times (median of each).
        pipeline_runs, part_runs = [], []
        for _ in range(3):
            pipeline_runs.append(timed(lambda: meter.begin({"model": "qwen-plus",
                                                             "messages": HELLO})
                                       .finish(USAGE), n * 5))
            part_runs.append(parts_alone(folder, n * 5))
        sync_pipeline = statistics.median(pipeline_runs)
        parts = {name: statistics.median(run[name] for run in part_runs)
                 for name in part_runs[0]}
        report["pipeline only, sync (begin + finish, no HTTP)"] = {
            "µs": round(sync_pipeline * 1e6, 1)}
        report["parts alone (µs)"] = {name: round(t * 1e6, 1) for name, t in parts.items()}
        async_pipeline = report["pipeline only, async (begin_async + finish_async)"]["µs"] / 1e6
        meter.close()
        # The sequential medians above drift with the machine's load between them; the
        # targets' ratios come from interleaved rounds in thread CPU (pipeline_ratios).
        interleaved = pipeline_ratios()
        report["pipeline alone vs its parts, interleaved (thread CPU)"] = interleaved
        report["ratios (targets)"] = {
            "metered / bare, sync chat (≤ 1.10; sequential wall medians, see --paired)":
                report["sync chat"]["ratio"],
            "metered / bare, async chat (≤ 1.10; sequential wall medians, see --paired)":
                report["async chat"]["ratio"],
            "pipeline / sum of its parts, sync (≤ 1.3; sequential)": round(
                sync_pipeline / sum(parts.values()), 3),
            "async pipeline / sync pipeline (≤ 1.2; sequential)": round(
                async_pipeline / sync_pipeline, 3),
            "pipeline / sum of its parts, sync (≤ 1.3; interleaved)": interleaved[
                "pipeline ÷ sum of its parts, sync (≤ 1.3; median of paired rounds)"],
            "async pipeline / sync pipeline (≤ 1.2; interleaved)": interleaved[
                "async pipeline ÷ sync pipeline (≤ 1.2; median of paired rounds)"]}
        report["first async call, fresh process, no warm-up"] = first_call()

        # Three runs each: on a shared machine one run can catch the process descheduled.
        metered_runs, bare_runs = [], []
        for _ in range(3):
            limited = new_meter(limiter=qm.RateLimiter(limits={"qwen-plus": (900, None)}))
            waiting = limited.wrap(openai.AsyncOpenAI(api_key="sk-x",
                                                      base_url=server.compatible))
            metered_runs.append(asyncio.run(stall(waiting)))
            limited.close()
            bare_runs.append(asyncio.run(stall(openai.AsyncOpenAI(
                api_key="sk-x", base_url=server.compatible))))
        report["event loop, 50 async calls (3 runs)"] = {
            "metered, RPM 900 limiter: largest stall ms":
                [round(w * 1000, 1) for w, _ in metered_runs],
            "metered: seconds": [round(t, 2) for _, t in metered_runs],
            "bare, no limiter: largest stall ms": [round(w * 1000, 1) for w, _ in bare_runs],
            "bare: seconds": [round(t, 2) for _, t in bare_runs]}
    server.close()
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
