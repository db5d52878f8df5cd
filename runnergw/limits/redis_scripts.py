"""The Lua scripts that update shared limits atomically, each run in one round trip.

Times come from Redis (``TIME``), never from the nodes' clocks: nodes whose clocks differ
still agree on every bucket and slot expiry.

A slot take and a lease are named by the caller (a slot id, a lease id), so that one whose
answer was lost can be undone by its name: the undoing leaves a marker (kept ``ARGV`` ms)
that makes the call do nothing should it reach Redis only afterwards.
"""

from __future__ import annotations

import hashlib
from typing import Any

from twisted.internet.defer import Deferred

from runnergw.limits.redis_connection import Late, RedisConnection, RedisError

__all__ = ["ADD_TOKENS", "FREE_SLOT", "LEASE_TOKENS", "REFRESH_SLOTS", "Script",
           "TAKE_REQUEST", "TAKE_SLOT", "UNDO_LEASE"]


class Script:
    """A Lua script: sent whole (``EVAL``) the first time on a connection, then run by its
    SHA1 (``EVALSHA``), so that calls sent one after the other run in that order."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def run(self, connection: RedisConnection, keys: list[str], args: list[str | int],
            late: Late | None = None) -> Deferred[Any]:
        """The script's reply (``late``: as for ``RedisConnection.call``)."""
        if self.sha not in connection.scripts:
            if connection.connected:
                connection.scripts.add(self.sha)  # Redis keeps it once this EVAL runs
            return connection.call("EVAL", self.source, len(keys), *keys, *args, late=late)
        sent = connection.call("EVALSHA", self.sha, len(keys), *keys, *args, late=late)

        def unknown(failure: Any) -> Any:
            failure.trap(RedisError)
            if not str(failure.value).startswith("NOSCRIPT"):
                return failure
            # Redis forgot it (SCRIPT FLUSH): EVAL caches it again.
            return connection.call("EVAL", self.source, len(keys), *keys, *args, late=late)

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
-- KEYS[1]: the slots (a sorted set: slot id scored by its expiry); KEYS[2]: the slot's
-- marker, set once it was given back. ARGV: limit, slot id, expiry (seconds).
-- Expired slots (their node died) are free.
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then return 0 end
local expiry = tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now + expiry, ARGV[2])
redis.call('PEXPIRE', KEYS[1], math.ceil(expiry * 1000))
return 1
""")

FREE_SLOT = Script("""
-- KEYS[1]: the slots, KEYS[2]: the slot's marker. ARGV: slot id, ms the marker is kept.
-- A slot given back (released, or taken by a call that missed its deadline): a take or a
-- refresh of it reaching Redis afterwards does nothing.
redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
return redis.call('ZREM', KEYS[1], ARGV[1])
""")

REFRESH_SLOTS = Script(_NOW + """
-- KEYS[2i - 1]: a slot set, KEYS[2i]: the marker of the slot held there, ARGV[1 + i] its id;
-- ARGV[1]: expiry (seconds). A slot that expired meanwhile (Redis away longer than the
-- expiry) is counted again, unless it was given back. The slots counted again.
local expiry = tonumber(ARGV[1])
local again = 0
for i = 1, #KEYS / 2 do
  local key = KEYS[2 * i - 1]
  if redis.call('EXISTS', KEYS[2 * i]) == 0 then
    again = again + redis.call('ZADD', key, now + expiry, ARGV[i + 1])
    redis.call('PEXPIRE', key, math.ceil(expiry * 1000))
  end
end
return again
""")

LEASE_TOKENS = Script("""
-- KEYS[1]: the day's totals (a hash: subject -> tokens), KEYS[2]: the lease (what it
-- granted; its marker once undone). ARGV: subject, limit, want, need, seconds the day's
-- totals are kept, ms the lease is remembered.
local used = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local left = tonumber(ARGV[2]) - used
if redis.call('EXISTS', KEYS[2]) == 1 then return {0, math.max(0, left)} end
if left < tonumber(ARGV[4]) or left <= 0 then return {0, math.max(0, left)} end
local granted = math.min(tonumber(ARGV[3]), left)
redis.call('HINCRBY', KEYS[1], ARGV[1], granted)
redis.call('EXPIRE', KEYS[1], ARGV[5])
redis.call('SET', KEYS[2], granted, 'PX', ARGV[6])
return {granted, left - granted}
""")

UNDO_LEASE = Script("""
-- KEYS[1]: the day's totals, KEYS[2]: the lease. ARGV: subject, seconds the day's totals
-- are kept, ms the marker is kept. Gives back what the lease granted, once (never below
-- zero); a lease reaching Redis afterwards grants nothing. The tokens given back.
local granted = tonumber(redis.call('GET', KEYS[2]) or '')
redis.call('SET', KEYS[2], 'undone', 'PX', ARGV[3])
if granted == nil or granted <= 0 then return 0 end
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], -granted)
if total < 0 then redis.call('HSET', KEYS[1], ARGV[1], 0) end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return granted
""")

ADD_TOKENS = Script("""
-- KEYS[1]: the day's totals; ARGV: subject, count (negative: an unused lease given back),
-- seconds the day's totals are kept. Never below zero.
local total = redis.call('HINCRBY', KEYS[1], ARGV[1], ARGV[2])
if total < 0 then redis.call('HSET', KEYS[1], ARGV[1], 0) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
return total
""")
