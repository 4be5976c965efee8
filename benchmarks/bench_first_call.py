"""The event loop during the first async call of a fresh process, metered and bare.

Run:  python benchmarks/bench_first_call.py [--rounds 5]

Each round starts fresh Python processes (nothing imported, nothing cached, no warm-up by the
user) that make their first ``AsyncOpenAI`` chat call inside ``asyncio.run``, in turn:

* ``bare``: the openai client made at module level, its first call timed — the SDK's own
  first call (importing its chat resources, building response models) is a floor no meter
  removes;
* ``metered``: ``Meter(...)`` and ``meter.wrap(client)`` at module level, then the first call;
* ``bare, in loop`` / ``metered, in loop``: the client (and the Meter, and the wrap) made
  inside the running loop, then the call: making them runs on the loop too (imports);
* ``meter only``: the Meter made and the client wrapped at module level; in the loop, the
  SDK's first call made first with a bare client, then the first metered call timed: what is
  left is the meter's own first call. Then ``qwen-max`` (the Qwen2.5 family, on the same rank
  file as ``qwen-plus``'s Qwen3) and ``qwen3.5-plus`` (a family with a rank file of its own),
  each first call timed.

Columns: the longest single step the loop ran (every ``Handle._run`` timed: the loop serves
nothing else meanwhile), in wall and thread-CPU ms, from the call's start to its end; the
most of any one step that was the meter's own code; the call's latency. A sampling thread
(1 ms; switch interval lowered to 1 ms) sees which code the loop thread runs: the meter's
(``qwen_meter``) or the SDK's (``openai``, ``httpx``, ``httpcore``, ``pydantic``, …), by the
innermost frame from either; a step's meter share is its share of samples. The DashScope
stand-in runs in a process of its own (warmed up before the first round), so its work shares
neither the GIL nor the measured CPU.

The heartbeat column is a task ticking every 1 ms on the same loop: its worst lateness also
counts the time the loop thread waited for the GIL held by another thread (a worker thread
building a tokenizer's encoder), which no step timing sees.

Issue #23's target 2: no loop stall over 20 ms on the first call, of the meter's doing. Load
moves these figures: the load average is printed with them; compare columns of one run. With
``$PYTHONDONTWRITEBYTECODE`` set and no ``.pyc`` files (``python -m compileall qwen_meter``),
every import made inside the loop includes compiling the module: ~90 ms more for a meter made
there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

CHILD = r'''
import asyncio, asyncio.events, json, sys, tempfile, threading, time
kind, base_url = sys.argv[1], sys.argv[2]
sys.setswitchinterval(0.001)

steps = []           # (wall, cpu, start) of every loop step while recording
recording = [False]
_run = asyncio.events.Handle._run

def timed_run(self):
    if not recording[0]:
        return _run(self)
    start, cpu = time.perf_counter(), time.thread_time()
    try:
        return _run(self)
    finally:
        steps.append((time.perf_counter() - start, time.thread_time() - cpu, start))

asyncio.events.Handle._run = timed_run

samples = []         # (time, owner) of the loop thread, every ~1 ms
loop_ident = [None]
stop = threading.Event()
SDK = ("/openai/", "/httpx/", "/httpcore/", "/h11/", "/anyio/", "/pydantic", "/sniffio/")

def owner(frame):
    while frame is not None:
        name = frame.f_code.co_filename
        if "/qwen_meter/" in name:
            return "meter"
        if any(part in name for part in SDK):
            return "sdk"
        frame = frame.f_back
    return "other"

def sampler():
    while not stop.is_set():
        frame = sys._current_frames().get(loop_ident[0]) if loop_ident[0] else None
        if frame is not None and recording[0]:
            samples.append((time.perf_counter(), owner(frame)))
        time.sleep(0.001)

threading.Thread(target=sampler, daemon=True).start()

import openai
import qwen_meter as qm
from pathlib import Path
folder = Path(tempfile.mkdtemp())
messages = [{"role": "user", "content": "你好"}]

def make_meter():
    return qm.Meter(log=folder / "usage.jsonl", budget=qm.Budget("10 CNY"),
                    limiter=qm.RateLimiter(limits={"qwen-plus": (1000, 10**9)}))

def longest(since, until, lateness):
    """The longest loop step after ``since``, the most of any one step the meter ran, the
    heartbeat's worst lateness, and the call's latency."""
    mine = [s for s in steps if s[2] >= since]
    wall, cpu, start = max(mine)
    meter = 0.0
    for w, _, s in mine:  # the meter's share of each step, by the samples inside it
        inside = [who for t, who in samples if s <= t <= s + w]
        if inside:
            meter = max(meter, w * inside.count("meter") / len(inside))
    return {"wall": wall, "cpu": cpu, "meter wall": meter, "late": max(lateness, default=0.0),
            "call": until - since}

async def measured(work):
    """Run ``work()`` with every loop step timed and a 1 ms heartbeat task beside it."""
    lateness, done = [], asyncio.Event()

    async def heartbeat():
        last = time.perf_counter()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            lateness.append(now - last - 0.001)
            last = now

    beat = asyncio.create_task(heartbeat())
    await asyncio.sleep(0.01)
    recording[0] = True
    since = time.perf_counter()
    await asyncio.sleep(0)  # a new loop step from here
    await work()
    until = time.perf_counter()
    done.set()
    await beat
    recording[0] = False
    return longest(since, until, lateness)

def bare_client():
    return openai.AsyncOpenAI(api_key="sk-x", base_url=base_url)

def create(client, model="qwen-plus"):
    return lambda: client.chat.completions.create(model=model, messages=messages)

async def main():
    loop_ident[0] = threading.get_ident()
    out = {}
    if kind in ("bare", "metered"):  # client (and meter) made before the loop runs
        out["first call"] = await measured(create(CLIENT))
    elif kind == "bare, in loop":
        out["first call"] = await measured(lambda: create(bare_client())())
    elif kind == "metered, in loop":
        out["first call"] = await measured(lambda: create(make_meter().wrap(bare_client()))())
    else:  # meter only: the meter made at module level, the SDK's first call done first
        await create(bare_client())()
        out["first call"] = await measured(create(CLIENT))
        # qwen-max: another family (Qwen2.5) on the same rank file as qwen-plus's (Qwen3)
        out["qwen-max's first call"] = await measured(create(CLIENT, "qwen-max"))
        # qwen3.5-plus: a family with a rank file of its own, whose encoder is built now
        out["qwen3.5-plus's first call"] = await measured(create(CLIENT, "qwen3.5-plus"))
    return out

CLIENT = bare_client()
if kind in ("metered", "meter only"):
    CLIENT = make_meter().wrap(CLIENT)
result = asyncio.run(main())
stop.set()
print(json.dumps(result))
'''

KINDS = ("bare", "metered", "bare, in loop", "metered, in loop", "meter only")


def start_server() -> tuple[subprocess.Popen[str], str]:
    """The stand-in in a process of its own, warmed up (its catalogue and tokenizer loaded)."""
    server = subprocess.Popen([sys.executable, "-m", "qwen_meter.testing"],
                              stdout=subprocess.PIPE, text=True, env=_env())
    assert server.stdout is not None
    base = ""
    while not base:
        line = server.stdout.readline()
        if not line:
            raise SystemExit("the stand-in did not start")
        if "compatible mode:" in line:
            base = line.split("compatible mode:")[1].strip()
    body = json.dumps({"model": "qwen-plus", "messages": [{"role": "user", "content": "hi"}]})
    for model in ("qwen-plus", "qwen-max", "qwen3.5-plus"):
        request = urllib.request.Request(f"{base}/chat/completions",
                                         data=body.replace("qwen-plus", model).encode(),
                                         headers={"Content-Type": "application/json",
                                                  "Authorization": "Bearer sk-x"})
        urllib.request.urlopen(request, timeout=30).read()
    return server, base


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), *sys.path])}


def run_child(kind: str, base: str) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-c", CHILD, kind, base], capture_output=True,
                         text=True, timeout=120, env=_env())
    if out.returncode:
        raise SystemExit(out.stderr)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    server, base = start_server()
    rows: dict[str, list[dict[str, Any]]] = {}
    loads = [os.getloadavg()[0]]
    try:
        for _ in range(args.rounds):
            for kind in KINDS:  # in turn, so load changes hit every kind alike
                for label, figures in run_child(kind, base).items():
                    rows.setdefault(f"{kind}: {label}", []).append(figures)
            loads.append(os.getloadavg()[0])
            time.sleep(0.2)
    finally:
        server.terminate()
        server.wait()
    print(f"longest loop step during the first async call, {args.rounds} fresh processes "
          "each (ms: median [min–max])")
    print(f"{'':36} {'longest step':>17} {'its thread CPU':>17} {'meter (wall)':>17} "
          f"{'1 ms beat late':>17} {'the call (wall)':>17}")
    for label, figures in rows.items():
        cells = []
        for key in ("wall", "cpu", "meter wall", "late", "call"):
            values = sorted(f[key] * 1000 for f in figures)
            cells.append(f"{statistics.median(values):.1f} [{values[0]:.1f}–{values[-1]:.0f}]")
        print(f"{label:36} " + " ".join(f"{cell:>17}" for cell in cells))
    print(f"load average (1 min) during the run: {min(loads):.2f}–{max(loads):.2f}; "
          f"now {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
