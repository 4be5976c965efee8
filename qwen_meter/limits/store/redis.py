"""The Redis store: several hosts share counters; each operation is one atomic Lua script.

Works against one Redis server or a Redis Cluster (``redis+cluster://host:port`` or a
``redis.cluster.RedisCluster``). In a cluster a script may only touch keys of one hash slot,
so every key carries a hash tag: a window key is tagged by the caller's own ``{...}`` (the
limiter tags each ``{account:model}``, so its request and token windows share a slot while
different models spread over the cluster); untagged window keys share one slot; a ledger's
five keys are tagged by the ledger's name.

Every key expires: a window hash 130 s after its last write; a ledger's total at its period's
end (plus the caller's grace), or — a lifetime ledger with no period — ``ledger_retention``
seconds (default 400 days) after its last write; reservations and their tombstones soon after
their lease and tombstone time.

The asyncio twins run the same scripts through ``redis.asyncio`` (and its cluster client).
The scripts themselves are in :mod:`.redis_scripts`, the clients are opened by
:mod:`.redis_clients`; this module is the store: key names, arguments, results, and the
circuit breaker around every round trip.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .base import (
    AcquireResult,
    CircuitBreaker,
    LedgerResult,
    Store,
    StoreUnavailable,
    When,
    WindowCheck,
    check_seconds,
    hash_tag,
)
from .redis_clients import Ahead, DirectScripts, connect, url_of
from .redis_scripts import ACQUIRE, ADJUST, COMMIT, RELEASE, RESERVE, SUM, Script
from .refunds import Refund, RefundQueue, track

log = logging.getLogger("qwen_meter.store")


class RedisStore(Store):
    """Counters in Redis, shared by every process and host that uses the same server or cluster.

    ``server_time`` (default) takes the window's second from Redis's own clock (``TIME``, inside
    the script), so hosts with skewed clocks still share one window. With ``server_time=False``
    the caller's clock is read just before the script is sent (a script cannot call back); the
    clamp still keeps every key's seconds in order, so a late reading can only count in the
    newest second, never over-admit. ``timeout`` bounds every
    round trip (there are no client-side retries: a failure goes straight to the caller's
    ``on_store_error`` policy); ``breaker`` skips the server for a while after repeated failures.
    ``client`` / ``async_client`` accept ready clients (``redis.Redis``,
    ``redis.cluster.RedisCluster``, and their ``redis.asyncio`` counterparts).
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "qwen_meter:",
                 server_time: bool = True, timeout: float = 1.0, client: Any = None,
                 async_client: Any = None, cluster: bool | None = None,
                 ledger_retention: float = 400 * 86_400,
                 breaker: CircuitBreaker | None = None, refund_delay: float = 0.05) -> None:
        try:
            import redis
            import redis.cluster
        except ImportError as exc:
            raise StoreUnavailable("the Redis store needs `pip install redis`") from exc
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a Redis key prefix cannot hold braces (hash tags): {prefix!r}")
        self.timeout = check_seconds(timeout, "Redis store timeout", positive=True)
        retention = check_seconds(ledger_retention, "ledger_retention", positive=True)
        self.ledger_retention = max(1, math.ceil(retention or 1))
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        self._noscript = redis.exceptions.NoScriptError
        if cluster is None:
            cluster = url.startswith("redis+cluster:") or isinstance(
                client, redis.cluster.RedisCluster)
        self.cluster = cluster
        if client is not None and url == "redis://127.0.0.1:6379/0":
            url = url_of(client, cluster) or url  # so the asyncio twin reaches the same server
        self.url = url
        self.prefix = prefix
        self._window_keys: dict[str, tuple[str, str]] = {}
        self.server_time = server_time
        self.breaker = breaker or CircuitBreaker(name=f"Redis at {url}")
        self.redis = client if client is not None else self._connect(url, asynchronous=False)
        # One server: scripts go out as pre-built bytes on the store's own connections.
        self._direct = DirectScripts(self.redis) if DirectScripts.usable(self.redis) else None
        self.refund_delay = check_seconds(refund_delay, "Redis store refund_delay") or 0.0
        self._refunds = RefundQueue(self.refund_delay, self.flush)
        if self._direct is not None:
            track(self)
        self._aredis = async_client
        self._own_async = async_client is None
        self._aloop: Any = None
        self._acquire = Script(ACQUIRE)
        self._adjust = Script(ADJUST)
        self._sum = Script(SUM)
        self._reserve = Script(RESERVE)
        self._commit = Script(COMMIT)
        self._release = Script(RELEASE)

    def _connect(self, url: str, *, asynchronous: bool) -> Any:
        return connect(url, timeout=self.timeout, cluster=self.cluster, asynchronous=asynchronous)

    # --- running scripts: one argument builder and parser, two drivers ---------------------

    def _run(self, script: Script, keys: Sequence[str], args: Sequence[Any], *,
             read: bool = False, fold: Sequence[WindowCheck] = ()) -> Any:
        """One script, with the refunds waiting (one server: see window_settle) in the same
        send: those to ``fold``'s keys (an acquire's) as its own trailing arguments, the
        others as ADJUST scripts written ahead of it."""
        self.breaker.before()
        ahead: list[Ahead] = []
        taken = False
        if self._refunds.pending and self._direct is not None:
            refunds, ticket = self._refunds.take_in_flight()
            if refunds:
                taken = True
                ahead, extra = self._place(refunds, fold)
                args = [*args, *extra]
        if read:  # refunds that went with other threads' scripts land first
            self._refunds.wait_landed(ticket if taken else self._refunds.next_ticket,
                                      self.timeout)
        try:
            try:
                if self._direct is not None:
                    result, late = self._direct.evalsha_after(script.sha, keys, args, ahead)
                    if late and read:  # refunds that landed after the read: read again
                        result = self._direct.evalsha(script.sha, keys, args)
                else:
                    result = self.redis.evalsha(script.sha, len(keys), *keys, *args)
            except self._noscript:
                result = self.redis.eval(script.source, len(keys), *keys, *args)
        except self._errors as exc:
            self.breaker.failure()
            if taken:  # written or not, they are not sent again: never applied twice
                log.warning("window refunds may be lost: %s", exc)
            raise StoreUnavailable(f"Redis at {self.url} failed: {exc}") from exc
        finally:
            if taken:
                self._refunds.landed(ticket)
        self.breaker.success()
        return result

    async def _arun(self, script: Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        self.breaker.before()
        try:
            client = self._async_client()
            try:
                result = await client.evalsha(script.sha, len(keys), *keys, *args)
            except self._noscript:
                result = await client.eval(script.source, len(keys), *keys, *args)
        except self._errors as exc:
            self.breaker.failure()
            raise StoreUnavailable(f"Redis at {self.url} failed: {exc}") from exc
        self.breaker.success()
        return result

    def _async_client(self) -> Any:
        """The asyncio client for the running loop (an asyncio connection belongs to the loop
        that opened it, so a new loop — another ``asyncio.run`` — gets its own)."""
        import asyncio

        loop = asyncio.get_running_loop()
        if self._aredis is None or (self._own_async and self._aloop is not loop):
            self._aredis = self._connect(self.url, asynchronous=True)
            self._aloop = loop
        return self._aredis

    @contextmanager
    def _guard(self) -> Iterator[None]:
        """For callers that use ``self.redis`` directly (tests, tools)."""
        try:
            yield
        except self._errors as exc:
            raise StoreUnavailable(f"Redis at {self.url} failed: {exc}") from exc

    def _window_key(self, key: str) -> str:
        known = self._window_keys.get(key)
        if known is not None and known[0] is self.prefix:  # built once per key (per prefix)
            return known[1]
        if hash_tag(key) is not None:
            name = f"{self.prefix}w:{key}"
        else:
            name = f"{self.prefix}w:{{w}}:{key}"  # untagged keys share a slot (multi-key checks)
        if len(self._window_keys) < 4096:  # keys are per model: bounded in practice
            self._window_keys[key] = (self.prefix, name)
        return name

    def _ledger_keys(self, key: str) -> list[str]:
        base = f"{self.prefix}l:{{{key}}}"
        return [f"{base}:c", f"{base}:r", f"{base}:l", f"{base}:t", f"{base}:f"]

    def _acquire_call(self, checks: Sequence[WindowCheck], bucket: When
                      ) -> tuple[Script, list[str], list[Any]]:
        if self.server_time:
            when: Any = "server"
        elif callable(bucket):
            when = repr(float(bucket()))
        else:
            when = bucket
        args: list[Any] = [when]
        for check in checks:
            args += [check.limit, check.amount,
                     "" if check.per_second is None else check.per_second]
        return self._acquire, [self._window_key(c.key) for c in checks], args

    @staticmethod
    def _acquire_result(checks: Sequence[WindowCheck], raw: Sequence[Any]) -> AcquireResult:
        ok, retry, index, used, now = raw
        refused = checks[int(index) - 1].key if not ok else None
        return AcquireResult(bool(ok), int(retry), refused, int(used), float(now))

    @staticmethod
    def _result(raw: Sequence[Any]) -> LedgerResult:
        state = raw[3].decode() if isinstance(raw[3], bytes) else str(raw[3])
        return LedgerResult(bool(int(raw[0])), int(float(raw[1])), int(float(raw[2])), state)

    def _reserve_args(self, reservation: str, amount: int, limit: int | None,
                      lease_until: float, now: float, expire_at: float | None) -> list[Any]:
        return [repr(now), reservation, amount, "" if limit is None else limit,
                repr(lease_until), "" if expire_at is None else repr(expire_at),
                self.ledger_retention]

    def _commit_args(self, reservation: str, amount: int, now: float,
                     expire_at: float | None, strict: bool) -> list[Any]:
        return [repr(now), reservation, amount, "" if expire_at is None else repr(expire_at),
                self.ledger_retention, "1" if strict else ""]

    # --- sync -------------------------------------------------------------------------------

    def window_acquire(self, checks: Sequence[WindowCheck], bucket: When) -> AcquireResult:
        script, keys, args = self._acquire_call(checks, bucket)
        return self._acquire_result(checks, self._run(script, keys, args,
                                                      fold=checks))

    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        self._run(self._adjust, [self._window_key(key)], [bucket, delta])

    def window_settle(self, key: str, bucket: int, delta: int) -> None:
        if delta < 0 and self._direct is not None and self.refund_delay \
                and not self._refunds.closed:  # a refund: ahead of the next script
            self._refunds.add(key, bucket, delta)
        else:
            self.window_adjust(key, bucket, delta)

    def _place(self, refunds: list[Refund], fold: Sequence[WindowCheck]
               ) -> tuple[list[Ahead], list[int]]:
        """Refunds as ADJUST scripts to write ahead of the next one, and as the acquire's
        trailing arguments (key index, second, delta) for those to its own keys (``fold``):
        it applies them first, as ADJUST would, without a script and a reply of their own."""
        adjust = self._adjust
        ahead: list[Ahead] = []
        extra: list[int] = []
        own = [check.key for check in fold]
        for delta, key, bucket in refunds:
            if key in own:
                extra += (own.index(key) + 1, bucket, delta)
            else:
                ahead.append((adjust.sha, adjust.source, [self._window_key(key)],
                              [bucket, delta]))
        return ahead, extra

    def flush(self) -> None:
        """Send the refunds waiting now (the timer, ``close`` and interpreter exit call it;
        so may a caller that wants other processes to see them at once)."""
        if self._refunds.pending and self._direct is not None:
            # They go ahead of any script: here an adjust of nothing (a key never written).
            self._run(self._adjust, [self._window_key("{}refunds")], [0, 0])

    def window_sum(self, key: str, bucket: int) -> int:
        return int(self._run(self._sum, [self._window_key(key)], [bucket], read=True))

    def ledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                       lease_until: float, now: float, expire_at: float | None) -> LedgerResult:
        return self._result(self._run(self._reserve, self._ledger_keys(key), self._reserve_args(
            reservation, amount, limit, lease_until, now, expire_at)))

    def ledger_commit(self, key: str, reservation: str, amount: int, now: float,
                      expire_at: float | None, *, strict: bool = False) -> LedgerResult:
        return self._result(self._run(self._commit, self._ledger_keys(key), self._commit_args(
            reservation, amount, now, expire_at, strict)))

    def ledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        return self._result(self._run(self._release, self._ledger_keys(key),
                                      [repr(now), reservation]))

    def ledger_totals(self, key: str, now: float) -> LedgerResult:
        return self._result(self._run(self._release, self._ledger_keys(key), [repr(now), ""]))

    # --- asyncio ----------------------------------------------------------------------------

    async def awindow_acquire(self, checks: Sequence[WindowCheck], bucket: When
                              ) -> AcquireResult:
        return self._acquire_result(checks, await self._arun(*self._acquire_call(checks, bucket)))

    async def awindow_adjust(self, key: str, bucket: int, delta: int) -> None:
        await self._arun(self._adjust, [self._window_key(key)], [bucket, delta])

    async def awindow_sum(self, key: str, bucket: int) -> int:
        if self._refunds.pending or self._refunds.in_flight:  # a sync reconcile's refunds
            import asyncio

            await asyncio.to_thread(self._land_refunds)
        return int(await self._arun(self._sum, [self._window_key(key)], [bucket]))

    def _land_refunds(self) -> None:
        self.flush()
        self._refunds.wait_landed(self._refunds.next_ticket, self.timeout)

    async def aledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                              lease_until: float, now: float, expire_at: float | None
                              ) -> LedgerResult:
        return self._result(await self._arun(self._reserve, self._ledger_keys(key),
                                             self._reserve_args(reservation, amount, limit,
                                                                lease_until, now, expire_at)))

    async def aledger_commit(self, key: str, reservation: str, amount: int, now: float,
                             expire_at: float | None, *, strict: bool = False) -> LedgerResult:
        return self._result(await self._arun(self._commit, self._ledger_keys(key),
                                             self._commit_args(reservation, amount, now,
                                                               expire_at, strict)))

    async def aledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        return self._result(await self._arun(self._release, self._ledger_keys(key),
                                             [repr(now), reservation]))

    async def aledger_totals(self, key: str, now: float) -> LedgerResult:
        return self._result(await self._arun(self._release, self._ledger_keys(key),
                                             [repr(now), ""]))

    def close(self) -> None:
        self._refunds.close()
        try:
            self.flush()
        except StoreUnavailable as exc:
            log.warning("refunds not sent before close (the window over-counts until they "
                        "leave it): %s", exc)
        if self._direct is not None:
            self._direct.close()
        self.redis.close()

    async def aclose(self) -> None:
        """Close the asyncio client (if one was opened)."""
        if self._aredis is not None:
            await self._aredis.aclose()
            self._aredis = None


