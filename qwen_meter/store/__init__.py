"""Shared state behind the rate limiter and budgets: one interface, three backends.

* :class:`MemoryStore` — the default; one process, safe across threads and asyncio tasks.
* :class:`SQLiteStore` — several processes on one host (a WAL-mode file, short transactions).
* :class:`RedisStore` — several hosts (one atomic Lua script per operation, keys that expire).

:func:`open_store` picks one from a URL: ``memory://``, ``sqlite:///path/to/file.db``,
``redis://host:6379/0`` (``sqlite:///relative.db`` or ``sqlite:////absolute/path.db``).
"""

from __future__ import annotations

from typing import Any

from .base import AcquireResult, LedgerResult, Store, StoreUnavailable, WindowCheck
from .memory import MemoryStore


def open_store(url: str | None = None, **options: Any) -> Store:
    """A store from a URL (default: a new in-memory store; ``"memory"`` alone works too)."""
    from ..validate import optional_text

    optional_text(url, "open_store(url=)")
    if url is None or url == "memory" or url.startswith("memory:"):
        return MemoryStore()
    if url.startswith("sqlite:"):
        from .sqlite import SQLiteStore

        # As SQLAlchemy writes it: sqlite:///relative.db, sqlite:////absolute/path.db
        path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url[len("sqlite:"):]
        return SQLiteStore(path, **options)
    if url.startswith(("redis:", "rediss:", "unix:")):
        from .redis import RedisStore

        return RedisStore(url, **options)
    from ..errors import InvalidArgument

    raise InvalidArgument(f"unknown store URL {url!r}; use memory://, sqlite:///file or "
                          "redis://host", where="open_store(url=)")


__all__ = ["AcquireResult", "LedgerResult", "MemoryStore", "Store", "StoreUnavailable",
           "WindowCheck", "open_store"]
