"""The Redis store's connections: one server or a Redis Cluster, sync or asyncio.

:func:`connect` opens a redis-py client for a URL (``redis://``, ``rediss://``, ``unix://``, or
``redis+cluster://host:port`` for a cluster) with the store's timeout on every round trip and no
client-side retries; :func:`url_of` reads back the URL a ready client talks to, so the asyncio
twin of a store built from a sync client reaches the same server.
"""

from __future__ import annotations

from typing import Any


def cluster_url(url: str) -> str:
    return "redis" + url[len("redis+cluster"):]


def url_of(client: Any, cluster: bool) -> str | None:
    """The URL a ready redis-py client talks to (host, port, db), when it can be read."""
    try:
        if cluster:
            node = client.get_default_node()
            return f"redis+cluster://{node.host}:{node.port}"
        kwargs = client.connection_pool.connection_kwargs
        if "path" in kwargs:
            return f"unix://{kwargs['path']}?db={kwargs.get('db', 0)}"
        return f"redis://{kwargs.get('host', '127.0.0.1')}:{kwargs.get('port', 6379)}/" \
               f"{kwargs.get('db', 0)}"
    except (AttributeError, KeyError, TypeError):
        return None


def connect(url: str, *, timeout: float | None, cluster: bool, asynchronous: bool) -> Any:
    """A redis-py client (``redis.asyncio``'s if ``asynchronous``) for ``url``."""
    from redis.backoff import NoBackoff

    options: dict[str, Any] = {"socket_timeout": timeout,
                               "socket_connect_timeout": timeout}
    if asynchronous:
        from redis.asyncio import Redis
        from redis.asyncio.cluster import RedisCluster
        from redis.asyncio.retry import Retry
    else:
        from redis import Redis  # type: ignore[assignment]
        from redis.cluster import RedisCluster  # type: ignore[assignment]
        from redis.retry import Retry  # type: ignore[assignment]
    options["retry"] = Retry(NoBackoff(), 0)
    if cluster:
        return RedisCluster.from_url(cluster_url(url), **options)
    return Redis.from_url(url, **options)
