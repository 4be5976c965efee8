"""The Redis store's direct script path: pre-built EVALSHA bytes on its own connections.

Real redis-server (the ``redis_url`` fixture); each test checks what the server holds or what
the store answers, not how it got there.
"""

from __future__ import annotations

import uuid

import pytest

from qwen_meter.limits.store.base import WindowCheck


def store_for(url, **options):
    from qwen_meter.limits.store.redis import RedisStore

    return RedisStore(url, prefix=f"direct-{uuid.uuid4().hex[:6]}:", server_time=False,
                      **options)


def test_a_plain_server_uses_the_direct_path_and_counts_in_its_db(redis_url):
    store = store_for(redis_url)
    try:
        assert store._direct is not None
        checks = [WindowCheck("{m}:r", 10, 1), WindowCheck("{m}:t", 1000, 300)]
        for _ in range(3):
            assert store.window_acquire(checks, 1_000_000).ok
        # The counts are in the URL's db, read back through redis-py's own client.
        assert int(store.redis.hget(store._window_key("{m}:t"), "1000000")) == 900
        store.window_adjust("{m}:t", 1_000_000, -100)
        assert store.window_sum("{m}:t", 1_000_000) == 800
        refused = store.window_acquire([WindowCheck("{m}:t", 1000, 300)], 1_000_000)
        assert not refused.ok and refused.refused_key == "{m}:t"
    finally:
        store.close()


def test_a_connection_the_server_closed_is_replaced_before_use(redis_url):
    """The server drops every client (idle timeout, restart, CLIENT KILL): the next call
    works on a new connection instead of failing on the dead one."""
    store = store_for(redis_url, timeout=2.0)
    try:
        checks = [WindowCheck("k", 10**6, 5)]
        assert store.window_acquire(checks, 2_000_000).ok
        idle = list(store._direct._free)
        assert idle, "the direct path keeps its connection between calls"
        ids = [conn.send_command("CLIENT", "ID") or conn.read_response() for conn in idle]
        with store._guard():
            for client_id in ids:
                store.redis.execute_command("CLIENT", "KILL", "ID", client_id)
        assert store.window_acquire(checks, 2_000_000).ok
        assert store.window_sum("k", 2_000_000) == 10
    finally:
        store.close()


def test_scripts_flushed_on_the_server_are_loaded_again(redis_url):
    store = store_for(redis_url)
    try:
        checks = [WindowCheck("k", 10**6, 7)]
        assert store.window_acquire(checks, 3_000_000).ok
        with store._guard():
            store.redis.script_flush()
        assert store.window_acquire(checks, 3_000_000).ok  # NOSCRIPT → EVAL, same call
        assert store.window_sum("k", 3_000_000) == 14
        assert store.window_acquire(checks, 3_000_000).ok  # and by SHA again after
        assert store.window_sum("k", 3_000_000) == 21
    finally:
        store.close()


def test_an_error_reply_leaves_the_connection_usable(redis_url):
    """A script error (here: the window key holds a string) is the server's answer, read in
    full: it raises StoreUnavailable and the same connection serves the next call."""
    from qwen_meter.limits.store.base import StoreUnavailable

    store = store_for(redis_url)
    try:
        key = store._window_key("broken")
        with store._guard():
            store.redis.set(key, "not a hash")
        with pytest.raises(StoreUnavailable, match=r"WRONGTYPE|wrong kind"):
            store.window_acquire([WindowCheck("broken", 10, 1)], 4_000_000)
        sockets = [conn._sock for conn in store._direct._free]
        assert sockets and None not in sockets
        assert store.window_acquire([WindowCheck("fine", 10, 1)], 4_000_000).ok
        # The same socket, never closed and reopened.
        assert [conn._sock for conn in store._direct._free] == sockets
    finally:
        store.close()


def test_a_ready_cluster_client_keeps_redis_py_s_path(redis_cluster_url):
    store = store_for(redis_cluster_url)
    try:
        assert store._direct is None
        assert store.window_acquire([WindowCheck("{c}:r", 10, 1)], 5_000_000).ok
    finally:
        store.close()
