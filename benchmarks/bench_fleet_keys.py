"""How long a key created or revoked through one gateway replica's admin API takes to work
(or stop working) on the other replicas.

Run:  python benchmarks/bench_fleet_keys.py [--replicas 3] [--rounds 20] [--postgres URL]

Three ``qwen-meter serve`` processes share one ledger (PostgreSQL from ``--postgres`` or
$QWEN_METER_TEST_POSTGRES_URL, a scratch database made there and dropped afterwards; else one
SQLite file), each with its own memory store (limits play no part here), with the DashScope
stand-in upstream. Each round creates a key
on replica 1 and polls replicas 2..N at once (a thread and a kept-alive connection each)
with a chat call every 10 ms until each answers 200; then revokes it on replica 2 and polls
every replica until each answers 401. A figure is the time from the admin answer to the end
of the first call that saw the change: an upper bound that includes one call's time (a 200
relayed through the stand-in, or a 401) and up to 10 ms between polls. Rounds are spaced by
a random pause of up to 0.7 s. ``QM_BENCH_VERBOSE=1`` prints every poll and the replicas' logs.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from gateway_server import gateway_process  # noqa: E402

from qwen_meter.testing import FakeDashScope  # noqa: E402

TOKEN = "bench-admin-token-0123456789"
ENV = {"QM_BENCH_ADMIN": TOKEN, "QM_BENCH_REAL": "sk-REALbench0123456789"}
BODY = {"model": "qwen-flash", "max_tokens": 4, "messages": [{"role": "user", "content": "x"}]}


def until(client: httpx.Client, url: str, key: str, status: int, started: float,
          limit: float = 10.0) -> float:
    """Seconds from ``started`` to the end of the first call answered ``status`` (an upper
    bound of the propagation: the call before it, if any, had not seen the change)."""
    polls = 0
    while True:
        polls += 1
        got = client.post(f"{url}/compatible-mode/v1/chat/completions", json=BODY,
                          headers={"Authorization": f"Bearer {key}"}).status_code
        elapsed = time.monotonic() - started
        if got == status or elapsed > limit:
            if os.environ.get("QM_BENCH_VERBOSE"):
                print(f"{url} {status}: {polls} polls, {elapsed * 1000:.0f} ms", flush=True)
            return elapsed
        time.sleep(0.01)


def all_of(clients: dict[str, httpx.Client], urls: list[str], key: str, status: int
           ) -> list[float]:
    """Every replica polled at once, each from its own thread and kept-alive connection."""
    started = time.monotonic()
    with ThreadPoolExecutor(len(urls)) as pool:
        return list(pool.map(lambda u: until(clients[u], u, key, status, started), urls))


def run(ledger: str, replicas: int, rounds: int) -> dict[str, list[float]]:
    folder = Path(tempfile.mkdtemp(prefix="qm-fleet-bench-"))
    config = folder / "gateway.yaml"
    admin = {"Authorization": f"Bearer {TOKEN}"}
    times: dict[str, list[float]] = {"created": [], "revoked": []}
    with FakeDashScope() as fake, ExitStack() as stack:
        config.write_text(json.dumps({
            "store": "memory://", "ledger": ledger,
            "admin_token_env": "QM_BENCH_ADMIN",
            "upstreams": {"default": {"url": fake.url, "api_key_env": "QM_BENCH_REAL"}}}))
        started: list[tuple[str, object]] = []
        if os.environ.get("QM_BENCH_VERBOSE"):  # what the replicas printed, once stopped
            stack.callback(lambda: [print(getattr(p, "output", ("", ""))[1][-3000:])
                                    for _, p in started])
        started += [stack.enter_context(gateway_process("--config", str(config), env=ENV))
                    for _ in range(replicas)]
        urls = [url for url, _ in started]
        clients = {u: stack.enter_context(httpx.Client(timeout=10)) for u in urls}
        for url in urls:  # warm: tokenizer, connections
            clients[url].post(f"{url}/compatible-mode/v1/chat/completions", json=BODY)
        for n in range(rounds):
            time.sleep(random.uniform(0, 0.7))
            made = httpx.post(f"{urls[0]}/admin/keys", json={"name": f"bench-{n}"},
                              headers=admin, timeout=10)
            key = made.json()["key"]
            times["created"] += all_of(clients, urls[1:], key, 200)
            time.sleep(random.uniform(0, 0.7))
            httpx.delete(f"{urls[1]}/admin/keys/bench-{n}", headers=admin, timeout=10)
            times["revoked"] += all_of(clients, urls, key, 401)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replicas", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--postgres", default=os.environ.get("QWEN_METER_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    os.environ.update(ENV)
    ledgers = [("sqlite", f"sqlite:///{tempfile.mkdtemp()}/ledger.db")]
    with ExitStack() as stack:
        if args.postgres:
            from pg_server import fresh_database

            ledgers.append(("postgresql", stack.enter_context(fresh_database(args.postgres))))
        for kind, url in ledgers:
            times = run(url, args.replicas, args.rounds)
            for what, values in times.items():
                values.sort()
                print(f"{kind:<10} key {what:<8} live on every replica after: median "
                      f"{statistics.median(values) * 1000:6.0f} ms, p95 "
                      f"{values[int(len(values) * 0.95) - 1] * 1000:6.0f} ms, max "
                      f"{values[-1] * 1000:6.0f} ms ({len(values)} observations)")


if __name__ == "__main__":
    main()
