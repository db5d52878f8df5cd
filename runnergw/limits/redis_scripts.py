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

__all__ = ["ADD_TOKENS", "ADMIT", "FREE_SLOT", "GIVE_BACK", "LEASE_TOKENS", "REFRESH_SLOTS",
           "Script", "TAKE_REQUEST", "TAKE_SLOT", "UNDO_LEASE"]


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

_TAKE_REQUEST = """
-- A token bucket (a hash: a = requests available, t = when counted) of ``burst`` requests
-- refilled at ``per_minute``: {allowed (1 or 0), available, seconds until full, seconds
-- until one more request is allowed}.
local function take_request(bucket, per_minute, burst)
  local rate = tonumber(per_minute) / 60
  burst = tonumber(burst)
  local saved = redis.call('HMGET', bucket, 'a', 't')
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
  redis.call('HSET', bucket, 'a', tostring(available), 't', tostring(now))
  redis.call('PEXPIRE', bucket, math.ceil(reset * 1000) + 1000)
  local retry = 0
  if allowed == 0 then retry = (1 - available) / rate end
  return {allowed, tostring(available), tostring(reset), tostring(retry)}
end
"""

_TAKE_SLOT = """
-- One of ``limit`` places in ``slots`` (a sorted set: slot id scored by its expiry), unless
-- the slot's ``marker`` says it was given back already: 1 taken, 0 not. Expired slots
-- (their node died) are free.
local function take_slot(slots, marker, limit, slot_id, expiry)
  if redis.call('EXISTS', marker) == 1 then return 0 end
  redis.call('ZREMRANGEBYSCORE', slots, '-inf', now)
  if redis.call('ZCARD', slots) >= tonumber(limit) then return 0 end
  expiry = tonumber(expiry)
  redis.call('ZADD', slots, now + expiry, slot_id)
  redis.call('PEXPIRE', slots, math.ceil(expiry * 1000))
  return 1
end
"""

_LEASE_TOKENS = """
-- Up to ``want`` tokens of what ``limit`` leaves ``subject`` in ``day`` (a hash: subject ->
-- tokens), when at least ``need`` are left, recorded under ``lease`` (its marker once
-- undone: it then grants nothing): {granted, left}. ``day_kept`` seconds the totals are
-- kept, ``lease_kept`` ms the lease is remembered.
local function lease_tokens(day, lease, subject, limit, want, need, day_kept, lease_kept)
  local used = tonumber(redis.call('HGET', day, subject) or '0')
  local left = tonumber(limit) - used
  if redis.call('EXISTS', lease) == 1 then return {0, math.max(0, left)} end
  if left < tonumber(need) or left <= 0 then return {0, math.max(0, left)} end
  local granted = math.min(tonumber(want), left)
  redis.call('HINCRBY', day, subject, granted)
  redis.call('EXPIRE', day, day_kept)
  redis.call('SET', lease, granted, 'PX', lease_kept)
  return {granted, left - granted}
end
"""

TAKE_REQUEST = Script(_NOW + _TAKE_REQUEST + """
-- KEYS[1]: the bucket. ARGV: requests per minute, burst.
return take_request(KEYS[1], ARGV[1], ARGV[2])
""")

TAKE_SLOT = Script(_NOW + _TAKE_SLOT + """
-- KEYS[1]: the slots; KEYS[2]: the slot's marker, set once it was given back.
-- ARGV: limit, slot id, expiry (seconds).
return take_slot(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3])
""")

_FREE_SLOT = """
-- A slot given back (released, or taken by a call that missed its deadline): its marker is
-- set (kept ``kept`` ms), so that a take or a refresh of it reaching Redis afterwards does
-- nothing. 1 when it was held.
local function free_slot(slots, marker, slot_id, kept)
  redis.call('SET', marker, '1', 'PX', kept)
  return redis.call('ZREM', slots, slot_id)
end
"""

FREE_SLOT = Script(_FREE_SLOT + """
-- KEYS[1]: the slots, KEYS[2]: the slot's marker. ARGV: slot id, ms the marker is kept.
return free_slot(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
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

LEASE_TOKENS = Script(_LEASE_TOKENS + """
-- KEYS[1]: the day's totals, KEYS[2]: the lease. ARGV: subject, limit, want, need, seconds
-- the day's totals are kept, ms the lease is remembered.
return lease_tokens(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6])
""")

ADMIT = Script(_NOW + _TAKE_REQUEST + _TAKE_SLOT + _LEASE_TOKENS + """
-- A request's checks in turn, up to the first refused (a bucket that does not allow it, a
-- slot not free): the reply of each check made, as its own script gives it. ARGV gives
-- each check's kind, then its arguments; KEYS its keys, in the same order:
--   rate:  KEYS bucket;            ARGV per minute, burst
--   slot:  KEYS slots, marker;     ARGV limit, slot id, expiry
--   lease: KEYS day, lease;        ARGV subject, limit, want, need, day kept, lease kept
local replies = {}
local k, a = 1, 1
while a <= #ARGV do
  local kind = ARGV[a]
  local reply
  local refused = false
  if kind == 'rate' then
    reply = take_request(KEYS[k], ARGV[a + 1], ARGV[a + 2])
    refused = reply[1] == 0
    k, a = k + 1, a + 3
  elseif kind == 'slot' then
    reply = take_slot(KEYS[k], KEYS[k + 1], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3])
    refused = reply == 0
    k, a = k + 2, a + 4
  elseif kind == 'lease' then
    reply = lease_tokens(KEYS[k], KEYS[k + 1], ARGV[a + 1], ARGV[a + 2], ARGV[a + 3],
                         ARGV[a + 4], ARGV[a + 5], ARGV[a + 6])
    k, a = k + 2, a + 7
  else
    return redis.error_reply('unknown check ' .. tostring(kind))
  end
  replies[#replies + 1] = reply
  if refused then break end
end
return replies
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

_ADD_TOKENS = """
-- ``count`` more tokens (negative: an unused lease given back) for ``subject`` in ``day``,
-- never below zero, the totals kept ``day_kept`` seconds: the new total.
local function add_tokens(day, subject, count, day_kept)
  local total = redis.call('HINCRBY', day, subject, count)
  if total < 0 then
    redis.call('HSET', day, subject, 0)
    total = 0
  end
  redis.call('EXPIRE', day, day_kept)
  return total
end
"""

ADD_TOKENS = Script(_ADD_TOKENS + """
-- KEYS[1]: the day's totals; ARGV: subject, count, seconds the day's totals are kept.
return add_tokens(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
""")

GIVE_BACK = Script(_FREE_SLOT + _ADD_TOKENS + """
-- What requests gave back as they ended, in one call. ARGV[1]: ms a slot's marker is kept,
-- ARGV[2]: seconds the day's totals are kept, ARGV[3]: n, the slots given back. For i <= n:
-- KEYS[2i - 1] a slot set, KEYS[2i] the slot's marker, ARGV[3 + i] its id. Then for each
-- count j: KEYS[2n + j] a day's totals, ARGV[3 + n + 2j - 1] the subject, ARGV[3 + n + 2j]
-- the tokens. The slots that were held.
local slots = tonumber(ARGV[3])
local freed = 0
for i = 1, slots do
  freed = freed + free_slot(KEYS[2 * i - 1], KEYS[2 * i], ARGV[3 + i], ARGV[1])
end
for j = 1, #KEYS - 2 * slots do
  add_tokens(KEYS[2 * slots + j], ARGV[2 + slots + 2 * j], ARGV[3 + slots + 2 * j], ARGV[2])
end
return freed
""")
