"""The Redis store's connections: one server or a Redis Cluster, sync or asyncio.

:func:`connect` opens a redis-py client for a URL (``redis://``, ``rediss://``, ``unix://``, or
``redis+cluster://host:port`` for a cluster) with the store's timeout on every round trip and no
client-side retries; :func:`url_of` reads back the URL a ready client talks to, so the asyncio
twin of a store built from a sync client reaches the same server.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

log = logging.getLogger("qwen_meter.store")

#: A script written ahead of another one: (sha, source, keys, args); its reply is not needed.
Ahead = tuple[str, str, Sequence[str], Sequence[Any]]


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


class DirectScripts:
    """Runs the store's scripts on one server with less client work than ``client.evalsha``.

    redis-py's generic command path (a pool checkout with its health probe, the retry wrapper,
    observability hooks, packing every argument through its encoder, response callbacks) costs
    about three times the round trip's own client CPU on a small script. The store sends the
    same few commands over and over, so it keeps a few connections of the client's own pool
    class and settings (same server, db, auth, TLS, timeouts) and writes each ``EVALSHA`` as
    bytes: the SHA and key part is built once per key set, only the arguments are encoded per
    call. A connection goes back to the free list only after a whole reply was read, so none
    holds a stale reply; before reuse a zero-timeout poll notices a socket the server has
    closed (idle timeout, restart) and reconnects, as the pool's own check does. A Redis
    Cluster, or a client of another kind, keeps redis-py's path.
    """

    def __init__(self, client: Any) -> None:
        import os
        import select
        import threading

        self.pool = client.connection_pool
        self._free: list[Any] = []
        self._heads: dict[tuple[str, tuple[str, ...]], bytes] = {}
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._getpid = os.getpid
        self._poll = getattr(select, "poll", None)
        self._readable = getattr(select, "POLLIN", 1) | getattr(select, "POLLHUP", 0) \
            | getattr(select, "POLLERR", 0)

    @staticmethod
    def usable(client: Any) -> bool:
        """A plain single-server redis-py client (not a cluster, not one pinned connection)."""
        try:
            from redis import Redis
        except ImportError:  # pragma: no cover - the store checked already
            return False
        return type(client) is Redis and getattr(client, "connection", None) is None

    def _head(self, sha: str, keys: Sequence[str]) -> bytes:
        ident = (sha, tuple(keys))
        head = self._heads.get(ident)
        if head is None:
            parts = [b"EVALSHA", sha.encode(), str(len(keys)).encode(),
                     *(key.encode() for key in keys)]
            head = b"".join(b"$%d\r\n%s\r\n" % (len(part), part) for part in parts)
            if len(self._heads) < 4096:  # keys are per model: bounded in practice
                self._heads[ident] = head
        return head

    def _connection(self) -> Any:
        if self._getpid() != self._pid:  # a forked child must not share its parent's sockets
            with self._lock:
                if self._getpid() != self._pid:
                    self._free = []
                    self._pid = self._getpid()
        try:
            conn = self._free.pop()
        except IndexError:
            return self.pool.make_connection()
        if conn._sock is not None and self._stale(conn):
            conn.disconnect()  # the next send reconnects (AUTH, SELECT included)
        return conn

    def _stale(self, conn: Any) -> bool:
        """Whether an idle connection has something to read: data that no command asked for,
        or the end of the stream (the server closed it). A zero-timeout poll: the socket's
        own timeout would make even a non-blocking ``recv`` wait."""
        try:
            if self._poll is None:  # pragma: no cover - platforms without poll()
                return bool(conn.can_read(0))
            poller = self._poll()
            poller.register(conn._sock.fileno(), self._readable)
            return bool(poller.poll(0))
        except Exception:  # a broken socket: start over on a new one
            return True

    def _pack(self, pieces: list[bytes], sha: str, keys: Sequence[str],
              args: Sequence[Any]) -> None:
        pieces += (b"*%d\r\n" % (3 + len(keys) + len(args)), self._head(sha, keys))
        for arg in args:
            data = arg.encode() if isinstance(arg, str) else \
                arg if isinstance(arg, bytes) else str(arg).encode()
            pieces.append(b"$%d\r\n%s\r\n" % (len(data), data))

    def evalsha(self, sha: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """``EVALSHA sha len(keys) *keys *args``; raises what redis-py raises (NoScriptError
        included), with the connection dropped on anything but a reply from the server."""
        return self.evalsha_after(sha, keys, args, ())[0]

    def evalsha_after(self, sha: str, keys: Sequence[str], args: Sequence[Any],
                      ahead: Sequence[Ahead]) -> tuple[Any, bool]:
        """:meth:`evalsha` with ``ahead``: scripts whose replies nobody waits for (a limiter's
        refunds), written in the same send just before it, so the server runs them first on
        the same wake-up and the caller waits for one round trip. Their replies are read
        first; any error of theirs is logged, not raised (their caller is gone); one refused
        with NOSCRIPT (the server restarted or flushed its scripts) is run again by source,
        then *after* this script: the second value says so (a read may want to run again).
        They are never sent twice: if the connection fails they may be lost."""
        from redis.exceptions import ResponseError

        pieces: list[bytes] = []
        for ahead_sha, _, ahead_keys, ahead_args in ahead:
            self._pack(pieces, ahead_sha, ahead_keys, ahead_args)
        self._pack(pieces, sha, keys, args)
        conn = self._connection()
        try:
            conn.send_packed_command((b"".join(pieces),), check_health=False)
            again = self._read_ahead(conn, ahead) if ahead else []
            try:
                reply = conn.read_response()
            finally:
                for _, source, run_keys, run_args in again:  # after this reply, in the stream
                    conn.send_command("EVAL", source, len(run_keys), *run_keys, *run_args,
                                      check_health=False)
                    self._read_ahead(conn, [("", source, run_keys, run_args)])
        except ResponseError:
            self._free.append(conn)  # a whole error reply was read: the connection is clean
            raise
        except BaseException:
            conn.disconnect()
            self._free.append(conn)
            raise
        self._free.append(conn)
        return reply, bool(again)

    @staticmethod
    def _read_ahead(conn: Any, ahead: Sequence[Ahead]) -> list[Ahead]:
        """Read the replies of ``ahead``, in order: those refused with NOSCRIPT (the server
        restarted or flushed its scripts), to run again; other errors are logged."""
        from redis.exceptions import NoScriptError, ResponseError

        again = []
        for item in ahead:
            try:
                conn.read_response()
            except NoScriptError:
                again.append(item)
            except ResponseError as exc:
                log.warning("a window refund failed on the server: %s", exc)
        return again

    def close(self) -> None:
        free, self._free = self._free, []
        for conn in free:
            conn.disconnect()
