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
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .base import (
    TOMBSTONE_SECONDS,
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

# A window is one hash per key: a field per second, "s" (running total of the live seconds),
# "m" (the oldest second that may still hold an amount) and "t" (the newest second written).
# Pruning moves "m" forward, so an acquire is O(1) however busy the window is; after a long idle
# gap the hash starts over. The second is TIME (server clock, read inside the script) or the
# caller's, and is then clamped up to "t" of every key: see store/base.py for why.
_WINDOW_COMMON = """
local function live(key, bucket)
  local v = redis.call('HMGET', key, 's', 'm', tostring(bucket))
  local sum, oldest_kept, current = tonumber(v[1]) or 0, tonumber(v[2]), tonumber(v[3]) or 0
  local oldest = bucket - 60
  if oldest_kept and oldest_kept < oldest then
    if bucket - oldest_kept > 122 then
      redis.call('DEL', key)
      redis.call('HSET', key, 't', bucket)  -- keep the clamp's floor
      redis.call('EXPIRE', key, 130)
      return 0, 0
    end
    for b = oldest_kept, oldest - 1 do
      local old = redis.call('HGET', key, tostring(b))
      if old then
        sum = sum - tonumber(old)
        redis.call('HDEL', key, tostring(b))
      end
    end
    redis.call('HSET', key, 's', sum, 'm', oldest)
  end
  return sum, current
end
"""

_ACQUIRE = _WINDOW_COMMON + """
local bucket, now
if ARGV[1] == 'server' then
  local t = redis.call('TIME')
  bucket = tonumber(t[1])
  now = bucket + tonumber(t[2]) / 1e6
else
  now = tonumber(ARGV[1])
  bucket = math.floor(now)
end
for i = 1, #KEYS do
  local newest = tonumber(redis.call('HGET', KEYS[i], 't'))
  if newest and newest > bucket then bucket = newest end
end
for i = 1, #KEYS do  -- the newest second seen, admitted or not
  redis.call('HSET', KEYS[i], 't', bucket)
  redis.call('EXPIRE', KEYS[i], 130)
end
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 3
  local limit, amount = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local per_second = ARGV[base + 3]
  local key = KEYS[i]
  local sum, current = live(key, bucket)
  if per_second ~= '' and current > 0 and current + amount > tonumber(per_second) then
    return {0, 1, i, bucket, tostring(now)}
  end
  if sum + amount > limit then
    local fields = {}
    for b = bucket - 60, bucket do fields[#fields + 1] = tostring(b) end
    local values = redis.call('HMGET', key, unpack(fields))
    local total = 0
    for j = 1, 61 do total = total + (tonumber(values[j]) or 0) end
    local k = 61
    for j = 1, 60 do
      total = total - (tonumber(values[j]) or 0)
      if total + amount <= limit then k = j break end
    end
    return {0, k, i, bucket, tostring(now)}
  end
end
for i = 1, #KEYS do
  local key, amount = KEYS[i], ARGV[1 + (i - 1) * 3 + 2]
  redis.call('HINCRBY', key, tostring(bucket), amount)
  redis.call('HINCRBY', key, 's', amount)
  redis.call('HSETNX', key, 'm', bucket - 60)
end
return {1, 0, 0, bucket, tostring(now)}
"""

_ADJUST = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value then
  local old = tonumber(value)
  local new = math.max(0, old + tonumber(ARGV[2]))
  redis.call('HSET', KEYS[1], ARGV[1], new)
  redis.call('HINCRBY', KEYS[1], 's', new - old)
end
return 0
"""

_SUM = _WINDOW_COMMON + """
local bucket = tonumber(ARGV[1])
local newest = tonumber(redis.call('HGET', KEYS[1], 't'))
if newest and newest > bucket then bucket = newest end
local sum = live(KEYS[1], bucket)
redis.call('HSET', KEYS[1], 't', bucket)
redis.call('EXPIRE', KEYS[1], 130)
return sum
"""

# KEYS: committed (string), reservations (hash id -> units), leases (zset id -> lease_until),
# tombstones (hash id -> committed/released/expired), forget (zset id -> when to drop it).
_LEDGER_COMMON = """
local now = tonumber(ARGV[1])
local TOMB = """ + str(TOMBSTONE_SECONDS) + """
local dead = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'WITHSCORES')
for i = 1, #dead, 2 do
  redis.call('HDEL', KEYS[2], dead[i])
  redis.call('HSET', KEYS[4], dead[i], 'expired')
  redis.call('ZADD', KEYS[5], tonumber(dead[i + 1]) + TOMB, dead[i])
end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now) end
local gone = redis.call('ZRANGEBYSCORE', KEYS[5], '-inf', now)
for _, id in ipairs(gone) do redis.call('HDEL', KEYS[4], id) end
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', now) end
local function totals()
  local reserved = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do reserved = reserved + tonumber(v) end
  return tostring(tonumber(redis.call('GET', KEYS[1]) or '0')), tostring(reserved)
end
-- Lengthen a key's TTL to at least `seconds` (never shorten another caller's).
local function extend(key, seconds)
  seconds = math.max(1, math.ceil(seconds))
  if redis.call('TTL', key) < seconds then redis.call('EXPIRE', key, seconds) end
end
-- TTLs are relative to the caller's clock, the one the leases and periods are written in.
-- A ledger without a period end keeps its total for the retention after its last write.
local function expire(at, retention)
  if at ~= '' then extend(KEYS[1], tonumber(at) - now)
  else redis.call('EXPIRE', KEYS[1], tonumber(retention)) end
end
local function tombstone(id, state, forget)
  redis.call('HSET', KEYS[4], id, state)
  redis.call('ZADD', KEYS[5], forget, id)
  extend(KEYS[4], forget - now + 60)
  extend(KEYS[5], forget - now + 60)
end
"""

_RESERVE = _LEDGER_COMMON + """
local id, amount, limit, lease = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local committed, reserved = totals()
if redis.call('HEXISTS', KEYS[2], id) == 1 then return {1, committed, reserved, 'ok'} end
local state = redis.call('HGET', KEYS[4], id)
if state then return {0, committed, reserved, state} end
if limit ~= '' and tonumber(committed) + tonumber(reserved) + amount > tonumber(limit) then
  return {0, committed, reserved, 'refused'}
end
redis.call('HSET', KEYS[2], id, ARGV[3])
redis.call('ZADD', KEYS[3], lease, id)
extend(KEYS[2], lease - now + 60)
extend(KEYS[3], lease - now + 60)
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], 0) end
expire(ARGV[6], ARGV[7])
return {1, committed, tostring(tonumber(reserved) + amount), 'ok'}
"""

_COMMIT = _LEDGER_COMMON + """
local id = ARGV[2]
local lease = redis.call('ZSCORE', KEYS[3], id)
local state, forget = 'ok', 0
if lease then
  redis.call('HDEL', KEYS[2], id)
  redis.call('ZREM', KEYS[3], id)
  forget = tonumber(lease) + TOMB
else
  state = redis.call('HGET', KEYS[4], id) or 'unknown'
  if state == 'committed' or state == 'released' or ARGV[6] == '1' then
    local committed, reserved = totals()
    return {0, committed, reserved, state}
  end
  forget = now + TOMB
end
redis.call('INCRBY', KEYS[1], ARGV[3])
expire(ARGV[4], ARGV[5])
tombstone(id, 'committed', forget)
local committed, reserved = totals()
return {1, committed, reserved, state}
"""

_RELEASE = _LEDGER_COMMON + """
local id = ARGV[2]
if id == '' then
  local committed, reserved = totals()
  return {1, committed, reserved, 'ok'}
end
local lease = redis.call('ZSCORE', KEYS[3], id)
if not lease then
  local committed, reserved = totals()
  return {0, committed, reserved, redis.call('HGET', KEYS[4], id) or 'unknown'}
end
redis.call('HDEL', KEYS[2], id)
redis.call('ZREM', KEYS[3], id)
tombstone(id, 'released', tonumber(lease) + TOMB)
local committed, reserved = totals()
return {1, committed, reserved, 'ok'}
"""


class _Script:
    """A Lua script run by SHA (loaded on first NOSCRIPT), on a sync or async client."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


def _cluster_url(url: str) -> str:
    return "redis" + url[len("redis+cluster"):]


def _url_of(client: Any, cluster: bool) -> str | None:
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
                 breaker: CircuitBreaker | None = None) -> None:
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
            url = _url_of(client, cluster) or url  # so the asyncio twin reaches the same server
        self.url = url
        self.prefix = prefix
        self.server_time = server_time
        self.breaker = breaker or CircuitBreaker(name=f"Redis at {url}")
        self.redis = client if client is not None else self._connect(url, asynchronous=False)
        self._aredis = async_client
        self._own_async = async_client is None
        self._aloop: Any = None
        self._acquire = _Script(_ACQUIRE)
        self._adjust = _Script(_ADJUST)
        self._sum = _Script(_SUM)
        self._reserve = _Script(_RESERVE)
        self._commit = _Script(_COMMIT)
        self._release = _Script(_RELEASE)

    def _connect(self, url: str, *, asynchronous: bool) -> Any:
        from redis.backoff import NoBackoff

        options: dict[str, Any] = {"socket_timeout": self.timeout,
                                   "socket_connect_timeout": self.timeout}
        if asynchronous:
            from redis.asyncio import Redis
            from redis.asyncio.cluster import RedisCluster
            from redis.asyncio.retry import Retry
        else:
            from redis import Redis  # type: ignore[assignment]
            from redis.cluster import RedisCluster  # type: ignore[assignment]
            from redis.retry import Retry  # type: ignore[assignment]
        options["retry"] = Retry(NoBackoff(), 0)
        if self.cluster:
            return RedisCluster.from_url(_cluster_url(url), **options)
        return Redis.from_url(url, **options)

    # --- running scripts: one argument builder and parser, two drivers ---------------------

    def _run(self, script: _Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
        self.breaker.before()
        try:
            try:
                result = self.redis.evalsha(script.sha, len(keys), *keys, *args)
            except self._noscript:
                result = self.redis.eval(script.source, len(keys), *keys, *args)
        except self._errors as exc:
            self.breaker.failure()
            raise StoreUnavailable(f"Redis at {self.url} failed: {exc}") from exc
        self.breaker.success()
        return result

    async def _arun(self, script: _Script, keys: Sequence[str], args: Sequence[Any]) -> Any:
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
        if hash_tag(key) is not None:
            return f"{self.prefix}w:{key}"
        return f"{self.prefix}w:{{w}}:{key}"  # untagged keys share a slot (multi-key checks)

    def _ledger_keys(self, key: str) -> list[str]:
        base = f"{self.prefix}l:{{{key}}}"
        return [f"{base}:c", f"{base}:r", f"{base}:l", f"{base}:t", f"{base}:f"]

    def _acquire_call(self, checks: Sequence[WindowCheck], bucket: When
                      ) -> tuple[_Script, list[str], list[Any]]:
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
        return self._acquire_result(checks, self._run(*self._acquire_call(checks, bucket)))

    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        self._run(self._adjust, [self._window_key(key)], [bucket, delta])

    def window_sum(self, key: str, bucket: int) -> int:
        return int(self._run(self._sum, [self._window_key(key)], [bucket]))

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
        return int(await self._arun(self._sum, [self._window_key(key)], [bucket]))

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
        self.redis.close()

    async def aclose(self) -> None:
        """Close the asyncio client (if one was opened)."""
        if self._aredis is not None:
            await self._aredis.aclose()
            self._aredis = None


