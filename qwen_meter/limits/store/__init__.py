"""Shared state behind the rate limiter and budgets: one interface, three backends.

* :class:`MemoryStore` — the default; one process, safe across threads and asyncio tasks.
* :class:`SQLiteStore` — several processes on one host (a WAL-mode file, short transactions).
* :class:`RedisStore` — several hosts (one atomic Lua script per operation, keys that expire),
  on one Redis server or a Redis Cluster.

:func:`open_store` picks one from a URL: ``memory://``, ``sqlite:///path/to/file.db``,
``redis://host:6379/0``, ``redis+cluster://host:7000`` (``sqlite:///relative.db`` or
``sqlite:////absolute/path.db``), or wraps a ready ``redis.Redis`` /
``redis.cluster.RedisCluster`` client.
"""

from __future__ import annotations

from typing import Any

from ...base.errors import InvalidArgument, InvalidArgumentType
from .base import AcquireResult, CircuitBreaker, LedgerResult, Store, StoreUnavailable, WindowCheck
from .memory import MemoryStore


def open_store(url: Any = None, **options: Any) -> Store:
    """A store from a URL (default: a new in-memory store) or a redis-py client."""
    if isinstance(url, Store):
        return url
    if url is not None and not isinstance(url, str):
        module = type(url).__module__
        if module.startswith("redis.asyncio"):
            raise InvalidArgument("pass an asyncio Redis client as "
                                  "RedisStore(async_client=...) together with a sync client "
                                  "or URL", where="open_store(url=)")
        if module.startswith("redis."):
            from .redis import RedisStore

            return RedisStore(client=url, **options)
        raise InvalidArgumentType(f"not a store, store URL or Redis client: {url!r}",
                                  where="open_store(url=)")
    if url is None or url == "memory" or url.startswith("memory:"):
        return MemoryStore()
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        # As SQLAlchemy writes it: sqlite:///relative.db, sqlite:////absolute/path.db
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite:"):]
        return SQLiteStore(path, **options)
    if url.startswith(("redis:", "rediss:", "unix:", "redis+cluster:")):
        from .redis import RedisStore

        return RedisStore(url, **options)
    raise InvalidArgument(f"unknown store URL {url!r}; use memory://, sqlite:///file, "
                          "redis://host or redis+cluster://host:port", where="open_store(url=)")


__all__ = ["AcquireResult", "CircuitBreaker", "LedgerResult", "MemoryStore", "Store",
           "StoreUnavailable", "WindowCheck", "open_store"]
