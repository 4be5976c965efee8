"""What the gateway adds: 1, 32, 50 and 200 concurrent clients, plain and streamed, through
``qwen-meter serve`` (and LiteLLM's proxy, if installed) vs straight to the same upstream, and
vs the floor: a bare pass-through proxy of the same parts (uvicorn + aiohttp, no metering,
``bench_passthrough.py``). The last lines are performance target 5, measured in interleaved
rounds (direct, pass-through, gateway, one batch each per round; medians of the per-round
figures, the load average printed with them): the gateway's added latency at one client as a
multiple of the pass-through's, and its 32-client stream throughput as a share of direct's.

Run:  pip install ".[gateway]"; python benchmarks/bench_gateway.py [--requests N]
      [--rounds R] [--redis redis://host:6379/0] [--baseline CHECKOUT] [--targets-only]
``--redis`` adds a gateway on that Redis store with a virtual key (an RPM/TPM limit and a
budget on it) to the target rounds; ``--baseline`` the gateway of another checkout (before /
after a change, in the same rounds). LiteLLM is looked for in /work/venv-litellm (or
$LITELLM_VENV); it is skipped if absent.

At one streaming client the added latency compared is the time to the first chunk: straight
from the canned upstream the client reads eleven separate chunks, through any proxy they
arrive together in one or two reads, so a stream's total time flatters every proxy (the
pass-through's added total is about zero) while the first chunk is measured alike.

Every process (canned upstream, gateway, LiteLLM, the load generator) runs on this machine, so
the figures include their competition for the cores; compare the rows with each other.
Added latency is the proxied percentile minus the direct one; time to first chunk is to the
first event of a stream. The gateway runs its embedded default (memory store, usage log in a
temporary folder): every call is counted, priced, reconciled and logged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

from gateway_server import free_port  # noqa: E402

BODY = {"model": "qwen-plus", "max_tokens": 64,
        "messages": [{"role": "user", "content": "你好，请介绍一下你自己。"}]}


def _wait(url: str, process: subprocess.Popen[bytes], timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited with {process.returncode}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError(f"{url} did not start")


@contextmanager
def serving(command: list[str], probe: str, env: dict[str, str] | None = None
            ) -> Iterator[subprocess.Popen[bytes]]:
    process = subprocess.Popen(command, env={**os.environ, **(env or {})},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait(probe, process)
        yield process
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of a process, in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value.strip()
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


async def load(url: str, clients: int, requests: int, stream: bool
               ) -> tuple[list[float], list[float], float]:
    """(latencies ms, first-chunk times ms, requests/s)."""
    body = {**BODY, "stream": stream}
    latencies: list[float] = []
    firsts: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60,
                                 headers={"Authorization": "Bearer sk-bench"}) as client:
        queue = iter(range(requests))

        async def worker() -> None:
            for _ in queue:
                started = time.perf_counter()
                if not stream:
                    response = await client.post(url, json=body)
                    response.raise_for_status()
                else:
                    async with client.stream("POST", url, json=body) as response:
                        response.raise_for_status()
                        first = None
                        async for _chunk in response.aiter_bytes():
                            if first is None:
                                first = time.perf_counter()
                        firsts.append(((first or time.perf_counter()) - started) * 1000)
                latencies.append((time.perf_counter() - started) * 1000)

        # Warm connections and caches first, untimed.
        warm = [client.post(url, json=BODY) for _ in range(min(clients, 20))]
        await asyncio.gather(*warm)
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        wall = time.perf_counter() - started
    return latencies, firsts, requests / wall


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def litellm_command(upstream: str, port: int, folder: Path) -> list[str] | None:
    venv = Path(os.environ.get("LITELLM_VENV", "/work/venv-litellm"))
    binary = venv / "bin" / "litellm"
    if not binary.exists():
        return None
    config = folder / "litellm.yaml"
    config.write_text(json.dumps({"model_list": [{
        "model_name": "qwen-plus",
        "litellm_params": {"model": "openai/qwen-plus",
                           "api_base": f"{upstream}/compatible-mode/v1",
                           "api_key": "sk-bench"}}],
        "litellm_settings": {"drop_params": True, "telemetry": False}}), encoding="utf-8")
    return [str(binary), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
            "--num_workers", "1"]


def keyed_config(folder: Path, upstream: str, redis_url: str) -> Path:
    """A gateway config on ``redis_url`` whose one virtual key (the load's ``sk-bench``) has
    an RPM and a TPM limit and a daily budget, none of them ever reached: every call takes
    the limiter and the budget round trips to Redis. The key's name is new on every run, so
    runs never share a budget."""
    from qwen_meter.gateway.keys import hash_key

    config = folder / "gateway-redis.json"
    config.write_text(json.dumps({
        "store": redis_url,
        "upstreams": {"default": {"url": upstream, "api_key_env": "QM_BENCH_REAL_KEY"}},
        "keys": [{"name": f"bench-{uuid.uuid4().hex[:8]}", "hash": hash_key("sk-bench"),
                  "rpm": 10_000_000, "tpm": 10_000_000_000,
                  "budgets": [{"name": "bench", "limit": "1000000 CNY", "per": "day"}]}]}),
        encoding="utf-8")
    return config


def target_rounds(compared: dict[str, tuple[str, int | None]], rounds: int, calls: int,
                  streams: int) -> None:
    """Performance target 5, in interleaved rounds: each round runs one batch per target
    (one client plain, one client streamed, 32 clients streamed), in turn, the order reversed
    every other round; the figures are medians of the per-round ones."""
    proxies = [name for name in compared if name != "direct"]
    added: dict[tuple[str, str], list[float]] = {}
    share: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    loads = [os.getloadavg()]
    for n in range(rounds):
        order = list(compared) if n % 2 == 0 else list(reversed(compared))
        for stream in (False, True):
            mode = "stream" if stream else "plain"
            p50 = {}
            for name in order:
                lat, first, _ = asyncio.run(load(compared[name][0], 1, calls, stream))
                p50[name] = pct(first if stream else lat, 0.5)
            for name in proxies:
                added.setdefault((name, mode), []).append(p50[name] - p50["direct"])
        rps = {}
        for name in order:
            url, pid = compared[name]
            before = cpu_seconds(pid) if pid else 0.0
            rps[name] = asyncio.run(load(url, 32, streams, True))[2]
            if pid:
                cpu.setdefault(name, []).append(
                    (cpu_seconds(pid) - before) * 1000 / (streams + 20))
        for name in proxies:
            share.setdefault(name, []).append(rps[name] / rps["direct"])
        loads.append(os.getloadavg())
        print(f"round {n + 1}, load {loads[-1][0]:.1f}: 32-client streams/s " + ", ".join(
            f"{name} {rps[name]:.0f}" for name in compared) + "; added p50 ms (plain, "
            "first chunk) " + ", ".join(f"{name} {added[name, 'plain'][-1]:+.2f} "
                                        f"{added[name, 'stream'][-1]:+.2f}"
                                        for name in proxies), flush=True)
    median = statistics.median
    print(f"\nTarget 5, {rounds} interleaved rounds of {calls} one-client calls and "
          f"{streams} 32-client streams per target, load average (1 min) "
          f"{min(x[0] for x in loads):.1f}-{max(x[0] for x in loads):.1f}:")
    for mode, what in (("plain", "p50"), ("stream", "p50 to the first chunk")):
        floor = added["passthrough", mode]
        for name in proxies[1:]:
            ratios = [a / f for a, f in zip(added[name, mode], floor, strict=True) if f > 0.05]
            ratio = f"×{median(ratios):.2f} of the pass-through's (target ≤ ×1.3)" if ratios \
                else "the pass-through added nothing measurable"
            print(f"  1 client {mode:<6}: {name} adds {median(added[name, mode]):.2f} ms "
                  f"{what}, the pass-through {median(floor):.2f} ms: {ratio}")
    for name in proxies:
        print(f"  32 clients stream: {name} ×{median(share[name]):.2f} of direct's throughput"
              f"{' (target ≥ ×0.9)' if name != 'passthrough' else ''}; "
              f"CPU {median(cpu[name]):.2f} ms per stream")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000,
                        help="requests per row (default 1000)")
    parser.add_argument("--litellm-requests", type=int, default=300,
                        help="requests per LiteLLM row (default 300: it is much slower)")
    parser.add_argument("--no-litellm", action="store_true")
    parser.add_argument("--rounds", type=int, default=15,
                        help="interleaved rounds for the target lines (default 15)")
    parser.add_argument("--target-calls", type=int, default=50,
                        help="calls per one-client batch of a round (default 50)")
    parser.add_argument("--stream-calls", type=int, default=320,
                        help="streams per 32-client batch of a round (default 320)")
    parser.add_argument("--redis", metavar="URL",
                        help="also a gateway on this Redis store with a virtual key")
    parser.add_argument("--baseline", metavar="CHECKOUT",
                        help="also the gateway of another checkout (e.g. a worktree of "
                             "main), to compare code before and after in the same rounds")
    parser.add_argument("--targets-only", action="store_true",
                        help="only the target rounds (no table, no LiteLLM)")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench-gateway-"))
    up_port, gw_port, ll_port, pt_port = free_port(), free_port(), free_port(), free_port()
    upstream = f"http://127.0.0.1:{up_port}"
    env = {"PYTHONPATH": str(ROOT)}
    targets: dict[str, str] = {"direct": f"{upstream}/compatible-mode/v1/chat/completions"}
    rows: list[dict] = []
    # One client in sequence shows the added latency without queueing; 50 and 200 the
    # behaviour under concurrency.
    plan = [(clients, stream) for clients in (1, 32, 50, 200) for stream in (False, True)]
    bases: dict[tuple[int, bool], dict] = {}

    def measure(name: str, url: str, pid: int | None, clients: int, stream: bool,
                n: int) -> None:
        cpu = cpu_seconds(pid) if pid else 0.0
        lat, first, rps = asyncio.run(load(url, clients, n, stream))
        row = {"target": name, "clients": clients, "mode": "stream" if stream else "plain",
               "requests": n, "p50": pct(lat, 0.5), "p99": pct(lat, 0.99), "rps": rps,
               "first_p50": pct(first, 0.5) if stream else None,
               "rss": rss_mb(pid) if pid else None,
               # the proxy's own CPU per call: what it costs, whatever the machine's load
               "cpu_ms": (cpu_seconds(pid) - cpu) * 1000 / (n + min(clients, 20)) if pid
               else None}
        base = bases.setdefault((clients, stream), row)
        row["added_p50"] = row["p50"] - base["p50"]
        row["added_p99"] = row["p99"] - base["p99"]
        row["added_first"] = row["first_p50"] - base["first_p50"] if stream else None
        rows.append(row)
        print(_line(row), flush=True)

    def count(clients: int, limit: int) -> int:
        return min(limit, 300) if clients == 1 else limit

    with serving([sys.executable, str(HERE / "bench_upstream.py"), str(up_port)], upstream,
                 env), ExitStack() as proxies:
        # Direct, the pass-through and qwen-meter alternate row by row; LiteLLM runs
        # afterwards, alone (its background work after each call would load the other rows).
        gateway = proxies.enter_context(serving(
            [sys.executable, "-m", "qwen_meter.cli", "serve", "--upstream", upstream,
             "--port", str(gw_port), "--log", str(folder / "usage.jsonl")],
            f"http://127.0.0.1:{gw_port}/healthz", env))
        passthrough = proxies.enter_context(serving(
            [sys.executable, str(HERE / "bench_passthrough.py"), str(pt_port), upstream],
            f"http://127.0.0.1:{pt_port}/", env))
        path = "/compatible-mode/v1/chat/completions"
        compared = {"direct": (targets["direct"], None),
                    "passthrough": (f"http://127.0.0.1:{pt_port}{path}", passthrough.pid),
                    "qwen-meter": (f"http://127.0.0.1:{gw_port}{path}", gateway.pid)}
        if args.redis:
            keyed_port = free_port()
            keyed = proxies.enter_context(serving(
                [sys.executable, "-m", "qwen_meter.cli", "serve", "--config",
                 str(keyed_config(folder, upstream, args.redis)), "--port", str(keyed_port),
                 "--log", str(folder / "usage-redis.jsonl")],
                f"http://127.0.0.1:{keyed_port}/healthz",
                {**env, "QM_BENCH_REAL_KEY": "sk-bench-upstream"}))
            compared["qwen-meter+redis"] = (f"http://127.0.0.1:{keyed_port}{path}", keyed.pid)
        if args.baseline:
            base_port = free_port()
            base = proxies.enter_context(serving(
                [sys.executable, "-m", "qwen_meter.cli", "serve", "--upstream", upstream,
                 "--port", str(base_port), "--log", str(folder / "usage-baseline.jsonl")],
                f"http://127.0.0.1:{base_port}/healthz",
                {"PYTHONPATH": str(Path(args.baseline).resolve())}))
            compared["baseline"] = (f"http://127.0.0.1:{base_port}{path}", base.pid)
        if not args.targets_only:
            for clients, stream in plan:
                n = count(clients, args.requests)
                for name in ("direct", "passthrough", "qwen-meter"):
                    measure(name, compared[name][0], compared[name][1], clients, stream, n)
        target_rounds(compared, args.rounds, args.target_calls, args.stream_calls)
        proxies.close()
        litellm = None if args.no_litellm or args.targets_only else \
            litellm_command(upstream, ll_port, folder)
        if litellm:
            # its key check on (it refuses to start without one), the bundled price map (no
            # network fetch), errors-only logging
            with serving(litellm, f"http://127.0.0.1:{ll_port}/health/liveliness",
                         {"LITELLM_LOG": "ERROR", "LITELLM_MASTER_KEY": "sk-bench",
                          "LITELLM_LOCAL_MODEL_COST_MAP": "True"}) as proxy:
                for clients, stream in plan:
                    measure("litellm", f"http://127.0.0.1:{ll_port}/chat/completions",
                            proxy.pid, clients, stream, count(clients, args.litellm_requests))
    # The log holds a journal intent and a record per call: count the records, and the ones
    # settled with the usage the upstream reported.
    lines = [json.loads(line) for line in (folder / "usage.jsonl").open(encoding="utf-8")]
    records = [r for r in lines if "journal" not in r]
    exact = sum(r["status"] == "ok" and not r["usage_estimated"] for r in records)
    shutil.rmtree(folder, ignore_errors=True)
    direct = [r["p50"] for r in rows if r["target"] == "direct"]
    print(f"\nqwen-meter usage records written: {len(records)} ({exact} ok with the upstream's "
          f"usage); upstream {upstream}; {os.cpu_count()} CPUs"
          + (f"; median direct plain p50 {statistics.median(direct):.1f} ms" if direct else ""))


def _line(row: dict) -> str:
    first = f"  first {row['first_p50']:6.1f} ms (+{row['added_first']:5.1f})" \
        if row["first_p50"] is not None else " " * 28
    rss = f"  CPU {row['cpu_ms']:4.2f} ms/call  RSS {row['rss'][0]:4.0f} MB " \
        f"(peak {row['rss'][1]:4.0f})" if row["rss"] else ""
    return (f"{row['target']:<11} {row['clients']:>3} clients {row['mode']:<6} "
            f"p50 {row['p50']:7.1f} ms (+{row['added_p50']:6.1f})  "
            f"p99 {row['p99']:7.1f} ms (+{row['added_p99']:6.1f}){first}  "
            f"{row['rps']:7.0f} req/s{rss}")


if __name__ == "__main__":
    main()
