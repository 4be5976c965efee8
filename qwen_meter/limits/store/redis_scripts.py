"""The Lua scripts behind the Redis store, one per store operation, and how they are run.

Each script is one atomic step on the server: ``ACQUIRE`` / ``ADJUST`` / ``SUM`` work on the
limiter's sliding windows (one hash per key), ``RESERVE`` / ``COMMIT`` / ``RELEASE`` on a
budget's ledger (five keys, listed below, that ``RedisStore._ledger_keys`` names in this order).
:class:`Script` pairs a script's source with its SHA, so the store can run it by ``EVALSHA``
and load it on the first ``NOSCRIPT``.
"""

from __future__ import annotations

import hashlib

from .base import TOMBSTONE_SECONDS

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

# The acquire reads each key with one HMGET and writes it with one HSET and one EXPIRE: every
# redis.call costs the server a command dispatch and a conversion of its reply to Lua, several
# times the work of the hash commands themselves, so the script makes as few as it can
# (7 for two keys in the common case, against 15 when it read and wrote field by field).
ACQUIRE = """
local bucket, now
if ARGV[1] == 'server' then
  local t = redis.call('TIME')
  bucket = tonumber(t[1])
  now = bucket + tonumber(t[2]) / 1e6
else
  now = tonumber(ARGV[1])
  bucket = math.floor(now)
end
local asked, seen, newest = bucket, {}, {}
for i = 1, #KEYS do  -- newest second, running total, oldest kept, the asked second's amount
  seen[i] = redis.call('HMGET', KEYS[i], 't', 's', 'm', tostring(asked))
  newest[i] = tonumber(seen[i][1])
  if newest[i] and newest[i] > bucket then bucket = newest[i] end
end
local oldest = bucket - 60
-- Refunds to these keys that waited for this acquire (key index, second, delta), applied
-- first, as ADJUST would be just before it: one to the asked second (the common case) in the
-- figures just read, written with the rest below; any other by itself.
local refunded = {}
for r = 2 + 3 * #KEYS, #ARGV, 3 do
  local i, field, delta = tonumber(ARGV[r]), ARGV[r + 1], tonumber(ARGV[r + 2])
  local v = seen[i]
  if tonumber(field) == asked and asked >= oldest then
    if v[4] then
      local old = tonumber(v[4])
      local new = math.max(0, old + delta)
      v[4], v[2] = new, (tonumber(v[2]) or 0) + new - old
      refunded[i] = true
    end
  else
    local value = redis.call('HGET', KEYS[i], field)
    if value then
      local old = tonumber(value)
      local new = math.max(0, old + delta)
      redis.call('HSET', KEYS[i], field, new)
      redis.call('HINCRBY', KEYS[i], 's', new - old)
      v[2] = (tonumber(v[2]) or 0) + new - old
    end
  end
end
local sums, currents, kept, pruned = {}, {}, {}, {}
for i = 1, #KEYS do
  local key, v = KEYS[i], seen[i]
  local sum, oldest_kept, current = tonumber(v[2]) or 0, tonumber(v[3]), tonumber(v[4]) or 0
  if bucket ~= asked then current = tonumber(redis.call('HGET', key, tostring(bucket))) or 0 end
  if oldest_kept and oldest_kept < oldest then
    if bucket - oldest_kept > 122 then  -- idle for two windows: start the hash over
      redis.call('DEL', key)
      sum, current, oldest_kept, newest[i], refunded[i] = 0, 0, nil, nil, nil
    else  -- drop the seconds that left the window, in one HMGET and one HDEL
      local fields = {}
      for b = oldest_kept, oldest - 1 do fields[#fields + 1] = tostring(b) end
      for _, old in ipairs(redis.call('HMGET', key, unpack(fields))) do
        if old then sum = sum - tonumber(old) end
      end
      redis.call('HDEL', key, unpack(fields))
      oldest_kept, pruned[i] = oldest, true
    end
  end
  sums[i], currents[i], kept[i] = sum, current, oldest_kept
end
local refused, retry = 0, 0
for i = 1, #KEYS do
  local base = 1 + (i - 1) * 3
  local limit, amount = tonumber(ARGV[base + 1]), tonumber(ARGV[base + 2])
  local per_second = ARGV[base + 3]
  if per_second ~= '' and currents[i] > 0 and currents[i] + amount > tonumber(per_second) then
    refused, retry = i, 1
    break
  end
  if sums[i] + amount > limit then
    local fields = {}
    for b = oldest, bucket do fields[#fields + 1] = tostring(b) end
    local values = redis.call('HMGET', KEYS[i], unpack(fields))
    if refunded[i] then values[asked - oldest + 1] = seen[i][4] end  -- not written yet
    local total = 0
    for j = 1, 61 do total = total + (tonumber(values[j]) or 0) end
    retry = 61
    for j = 1, 60 do
      total = total - (tonumber(values[j]) or 0)
      if total + amount <= limit then retry = j break end
    end
    refused = i
    break
  end
end
for i = 1, #KEYS do  -- only the fields that change, in one HSET
  local key, fields = KEYS[i], {}
  if newest[i] ~= bucket then  -- "t", the newest second seen, admitted or not
    fields[1], fields[2] = 't', bucket
  end
  if refunded[i] and (refused > 0 or bucket ~= asked) then  -- the refund, on its own
    fields[#fields + 1], fields[#fields + 2] = tostring(asked), seen[i][4]
  end
  if refused == 0 then
    local amount = tonumber(ARGV[1 + (i - 1) * 3 + 2])
    fields[#fields + 1], fields[#fields + 2] = 's', sums[i] + amount
    fields[#fields + 1], fields[#fields + 2] = tostring(bucket), currents[i] + amount
    if kept[i] == nil or pruned[i] then
      fields[#fields + 1], fields[#fields + 2] = 'm', kept[i] or oldest
    end
  elseif pruned[i] or refunded[i] then
    fields[#fields + 1], fields[#fields + 2] = 's', sums[i]
    if pruned[i] then fields[#fields + 1], fields[#fields + 2] = 'm', kept[i] end
  end
  if #fields > 0 then redis.call('HSET', key, unpack(fields)) end
  redis.call('EXPIRE', key, 130)
end
if refused > 0 then return {0, retry, refused, bucket, tostring(now)} end
return {1, 0, 0, bucket, tostring(now)}
"""

ADJUST = """
local value = redis.call('HGET', KEYS[1], ARGV[1])
if value then
  local old = tonumber(value)
  local new = math.max(0, old + tonumber(ARGV[2]))
  redis.call('HSET', KEYS[1], ARGV[1], new)
  redis.call('HINCRBY', KEYS[1], 's', new - old)
end
return 0
"""

SUM = _WINDOW_COMMON + """
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

RESERVE = _LEDGER_COMMON + """
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

COMMIT = _LEDGER_COMMON + """
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

RELEASE = _LEDGER_COMMON + """
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


class Script:
    """A Lua script run by SHA (loaded on first NOSCRIPT), on a sync or async client."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()


__all__ = ["ACQUIRE", "ADJUST", "COMMIT", "RELEASE", "RESERVE", "SUM", "Script"]
