"""The Lua scripts that update shared limits atomically, each run in one round trip.

Times come from Redis (``TIME``), never from the nodes' clocks: nodes whose clocks differ
still agree on every bucket and slot expiry.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.defer import Deferred

from runnergw.limits.redis_connection import RedisConnection, RedisError

__all__ = ["ADD_TOKENS", "LEASE_TOKENS", "REFRESH_SLOTS", "Script", "TAKE_REQUEST",
           "TAKE_SLOT"]


class Script:
    """A Lua script run by its SHA1 (``EVALSHA``), sent whole once when Redis lacks it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def run(self, connection: RedisConnection, keys: list[str],
            args: list[str | int]) -> Deferred[Any]:
        """The script's reply."""
        sent = connection.call("EVALSHA", self.sha, len(keys), *keys, *args)

        def unknown(failure: Any) -> Any:
            failure.trap(RedisError)
            if not str(failure.value).startswith("NOSCRIPT"):
                return failure
            # Redis restarted (or flushed its scripts): EVAL caches it again.
            return connection.call("EVAL", self.source, len(keys), *keys, *args)

        return sent.addErrback(unknown)


_NOW = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
"""

TAKE_REQUEST = Script(_NOW + """
-- KEYS[1]: the bucket (a hash: a = requests available, t = when counted).
-- ARGV: requests per minute, burst.
local rate = tonumber(ARGV[1]) / 60
local burst = tonumber(ARGV[2])
local saved = redis.call('HMGET', KEYS[1], 'a', 't')
local available = tonumber(saved[1])
local counted = tonumber(saved[2])
if available == nil or counted == nil then
  available = burst
  counted = now
end
available = math.min(burst, available + math.max(0, now - counted) * rate)
local allowed = 0
if available >= 1 then
  available = available - 1
  allowed = 1
end
local reset = (burst - available) / rate
redis.call('HSET', KEYS[1], 'a', tostring(available), 't', tostring(now))
redis.call('PEXPIRE', KEYS[1], math.ceil(reset * 1000) + 1000)
local retry = 0
if allowed == 0 then retry = (1 - available) / rate end
return {allowed, tostring(available), tostring(reset), tostring(retry)}
""")

TAKE_SLOT = Script(_NOW + """
-- KEYS[1]: the slots (a sorted set: slot id scored by its expiry).
-- ARGV: limit, slot id, expiry (seconds). Expired slots (their node died) are free.
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local expiry = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + expiry, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(expiry * 1000))
return 1
""")

REFRESH_SLOTS = Script(_NOW + """
-- KEYS: the slot sets; ARGV[1]: expiry (seconds), ARGV[1 + i]: the slot held in KEYS[i].
local expiry = tonumber(ARGV[1])
for i, key in ipairs(KEYS) do
  redis.call('ZADD', key, 'XX', now + expiry, ARGV[i + 1])
  redis.call('PEXPIRE', key, math.ceil(expiry * 1000))
end
return #KEYS
""")

LEASE_TOKENS = Script("""
-- KEYS[1]: the day's totals (a hash: subject -> tokens).
-- ARGV: subject, limit, want, need, seconds the day's totals are kept.
local used = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local left = tonumber(ARGV[2]) - used
if left < tonumber(ARGV[4]) or left <= 0 then return {0, math.max(0, left)} end
local granted = math.min(tonumber(ARGV[3]), left)
redis.call('HINCRBY', KEYS[1], ARGV[1], granted)
redis.call('EXPIRE', KEYS[1], ARGV[5])
return {granted, left - granted}
""")

ADD_TOKENS = Script("""
-- KEYS[1]: the day's totals; ARGV: subject, count (negative: an unused lease given back),
-- seconds the day's totals are kept. Never below zero.
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if total < 0 then redis.call('HSET', KEYS[1], ARGV[1], 0) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return total
""")
