"""A throwaway redis-server on a free 127.0.0.1 port (for tests and benchmarks)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_redis() -> Iterator[str | None]:
    """The URL of a fresh server, or None when redis-server is not installed."""
    binary = shutil.which("redis-server")
    if binary is None:
        yield None
        return
    import redis

    port = free_port()
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1",
                                "--save", "", "--appendonly", "no"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        else:
            raise RuntimeError("redis-server did not start")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def free_cluster_port() -> int:
    """A free port p below 55536 whose cluster bus port p + 10000 is free too."""
    import random

    for _ in range(200):
        port = random.randint(20_000, 45_000)
        try:
            for candidate in (port, port + 10_000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


@contextmanager
def running_redis_cluster(masters: int = 3) -> Iterator[str | None]:
    """``redis+cluster://`` URL of a fresh Redis Cluster of ``masters`` primaries (no replicas)
    on free 127.0.0.1 ports, or None when redis-server / redis-cli are not installed."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        yield None
        return
    import tempfile

    import redis

    folder = tempfile.mkdtemp(prefix="qm-cluster-")
    ports: list[int] = []
    while len(ports) < masters:
        port = free_cluster_port()
        if port not in ports and port + 10_000 not in ports and port - 10_000 not in ports:
            ports.append(port)
    processes = []
    try:
        for port in ports:
            processes.append(subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"{folder}/nodes-{port}.conf",
                 "--cluster-node-timeout", "2000", "--dir", folder],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        for port in ports:
            _wait_ping(redis.Redis(port=port))
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
                        "--cluster-replicas", "0", "--cluster-yes"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)
        client = redis.Redis(port=ports[0])
        for _ in range(200):  # wait until every slot is served
            if client.cluster("info").get("cluster_state") == "ok":
                break
            time.sleep(0.05)
        else:
            raise RuntimeError("the Redis Cluster did not reach state ok")
        yield f"redis+cluster://127.0.0.1:{ports[0]}"
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(10)
        shutil.rmtree(folder, ignore_errors=True)


def _wait_ping(client) -> None:
    import redis

    for _ in range(100):
        try:
            client.ping()
            return
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


if __name__ == "__main__":  # .ci/run: start a cluster, print its URL, keep it until stdin ends
    import sys

    with running_redis_cluster() as url:
        print(url, flush=True)
        sys.stdin.read()
