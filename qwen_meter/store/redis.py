"""The Redis store: several hosts share counters; each operation is one atomic Lua script.

Keys live under a prefix (default ``qwen_meter:``) and expire: a window hash two minutes after
its last write, a ledger at its period's end, reservations soon after their lease. The
``{...}`` hash tags keep each ledger's keys in one cluster slot.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from .base import AcquireResult, LedgerResult, Store, StoreUnavailable, WindowCheck

# A window is one hash per key: a field per second, "s" (running total of the live seconds)
# and "m" (the oldest second that may still hold an amount). Pruning moves "m" forward, so an
# acquire is O(1) however busy the window is; after a long idle gap the hash starts over.
_WINDOW_COMMON = """
local function live(key, bucket)
  local v = redis.call('HMGET', key, 's', 'm', tostring(bucket))
  local sum, oldest_kept, current = tonumber(v[1]) or 0, tonumber(v[2]), tonumber(v[3]) or 0
  local oldest = bucket - 60
  if oldest_kept and oldest_kept < oldest then
    if bucket - oldest_kept > 122 then
      redis.call('DEL', key)
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
local bucket = tonumber(ARGV[1])
if ARGV[1] == 'server' then bucket = tonumber(redis.call('TIME')[1]) end
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 3
  local limit, amount = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local per_second = ARGV[base + 3]
  local key = KEYS[i]
  local sum, current = live(key, bucket)
  if per_second ~= '' and current > 0 and current + amount > tonumber(per_second) then
    return {0, 1, i, bucket}
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
    return {0, k, i, bucket}
  end
end
for i = 1, #KEYS do
  local key, amount = KEYS[i], ARGV[1 + (i - 1) * 3 + 2]
  redis.call('HINCRBY', key, tostring(bucket), amount)
  redis.call('HINCRBY', key, 's', amount)
  if redis.call('HSETNX', key, 'm', bucket - 60) == 0 then
    if tonumber(redis.call('HGET', key, 'm')) > bucket then redis.call('HSET', key, 'm', bucket) end
  end
  redis.call('EXPIRE', key, 130)
end
return {1, 0, 0, bucket}
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
local sum = live(KEYS[1], tonumber(ARGV[1]))
return sum
"""

# KEYS: committed (string), reservations (hash id -> units), leases (zset id -> lease_until)
_LEDGER_COMMON = """
local now = tonumber(ARGV[1])
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)) do
  redis.call('HDEL', KEYS[2], id)
end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local function totals()
  local reserved = 0
  for _, v in ipairs(redis.call('HVALS', KEYS[2])) do reserved = reserved + tonumber(v) end
  return tonumber(redis.call('GET', KEYS[1]) or '0'), reserved
end
-- TTLs are relative to the caller's clock, the one the leases and periods are written in.
local function expire(at)
  if at ~= '' then redis.call('EXPIRE', KEYS[1], math.max(1, math.ceil(tonumber(at) - now))) end
end
"""

_RESERVE = _LEDGER_COMMON + """
local id, amount, limit, lease = ARGV[2], tonumber(ARGV[3]), ARGV[4], tonumber(ARGV[5])
local committed, reserved = totals()
if limit ~= '' and committed + reserved + amount > tonumber(limit) then
  return {0, tostring(committed), tostring(reserved)}
end
redis.call('HSET', KEYS[2], id, ARGV[3])
redis.call('ZADD', KEYS[3], lease, id)
redis.call('EXPIRE', KEYS[2], math.ceil(lease - now) + 60)
redis.call('EXPIRE', KEYS[3], math.ceil(lease - now) + 60)
if redis.call('EXISTS', KEYS[1]) == 0 then redis.call('SET', KEYS[1], 0) end
expire(ARGV[6])
return {1, tostring(committed), tostring(reserved + amount)}
"""

_COMMIT = _LEDGER_COMMON + """
redis.call('HDEL', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
redis.call('INCRBY', KEYS[1], ARGV[3])
expire(ARGV[4])
local committed, reserved = totals()
return {1, tostring(committed), tostring(reserved)}
"""

_RELEASE = _LEDGER_COMMON + """
if ARGV[2] ~= '' then
  redis.call('HDEL', KEYS[2], ARGV[2])
  redis.call('ZREM', KEYS[3], ARGV[2])
end
local committed, reserved = totals()
return {1, tostring(committed), tostring(reserved)}
"""


class RedisStore(Store):
    """Counters in Redis, shared by every process and host that uses the same server.

    ``server_time`` (default) takes the window's second from Redis's own clock, so hosts
    with skewed clocks still share one window.
    """

    def __init__(self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = "qwen_meter:",
                 server_time: bool = True, timeout: float = 2.0, client: Any = None) -> None:
        try:
            import redis
        except ImportError as exc:
            raise StoreUnavailable("the Redis store needs `pip install redis`") from exc
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.ConnectionError,
                                                          redis.exceptions.TimeoutError, OSError)
        self.redis = client or redis.Redis.from_url(url, socket_timeout=timeout,
                                                    socket_connect_timeout=timeout)
        self.url = url
        self.prefix = prefix
        self.server_time = server_time
        register: Callable[[str], Any] = self.redis.register_script
        self._acquire = register(_ACQUIRE)
        self._adjust = register(_ADJUST)
        self._sum = register(_SUM)
        self._reserve = register(_RESERVE)
        self._commit = register(_COMMIT)
        self._release = register(_RELEASE)

    @contextmanager
    def _guard(self) -> Iterator[None]:
        try:
            yield
        except self._errors as exc:
            raise StoreUnavailable(f"Redis at {self.url} is unreachable: {exc}") from exc

    def _window_key(self, key: str) -> str:
        return f"{self.prefix}w:{{{key}}}"

    def _ledger_keys(self, key: str) -> list[str]:
        base = f"{self.prefix}l:{{{key}}}"
        return [f"{base}:c", f"{base}:r", f"{base}:l"]

    def window_acquire(self, checks: Sequence[WindowCheck], bucket: int) -> AcquireResult:
        args: list[Any] = ["server" if self.server_time else bucket]
        for check in checks:
            args += [check.limit, check.amount,
                     "" if check.per_second is None else check.per_second]
        with self._guard():
            ok, retry, index, used = self._acquire(
                keys=[self._window_key(c.key) for c in checks], args=args)
        refused = checks[int(index) - 1].key if not ok else None
        return AcquireResult(bool(ok), int(retry), refused, int(used))

    def window_adjust(self, key: str, bucket: int, delta: int) -> None:
        with self._guard():
            self._adjust(keys=[self._window_key(key)], args=[bucket, delta])

    def window_sum(self, key: str, bucket: int) -> int:
        with self._guard():
            return int(self._sum(keys=[self._window_key(key)], args=[bucket]))

    @staticmethod
    def _result(raw: Sequence[Any]) -> LedgerResult:
        return LedgerResult(bool(int(raw[0])), int(float(raw[1])), int(float(raw[2])))

    def ledger_reserve(self, key: str, reservation: str, amount: int, limit: int | None,
                       lease_until: float, now: float, expire_at: float | None) -> LedgerResult:
        with self._guard():
            return self._result(self._reserve(keys=self._ledger_keys(key), args=[
                now, reservation, amount, "" if limit is None else limit, lease_until,
                "" if expire_at is None else expire_at]))

    def ledger_commit(self, key: str, reservation: str, amount: int, now: float,
                      expire_at: float | None) -> LedgerResult:
        with self._guard():
            return self._result(self._commit(keys=self._ledger_keys(key), args=[
                now, reservation, amount, "" if expire_at is None else expire_at]))

    def ledger_release(self, key: str, reservation: str, now: float) -> LedgerResult:
        with self._guard():
            return self._result(self._release(keys=self._ledger_keys(key),
                                              args=[now, reservation]))

    def ledger_totals(self, key: str, now: float) -> LedgerResult:
        with self._guard():
            return self._result(self._release(keys=self._ledger_keys(key), args=[now, ""]))

    def close(self) -> None:
        self.redis.close()
