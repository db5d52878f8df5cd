"""Limit state shared by several gateway nodes through Redis.

Keys (each under the configured prefix): ``rate:<subject hash>`` a token bucket,
``slots:<subject hash>`` the concurrency slots held, ``day:<YYYY-MM-DD>`` the day's token
totals by subject (kept a few days), ``lease:<lease id>`` what a lease granted and
``gone:<slot id>`` a slot given back (each kept a minute, for undoing a call that missed its
deadline: see ``redis_undo``). Subjects are hashed in key names, so no subject can name
another key; in the day's hash they are fields, kept as they are for the report.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from runnergw.limits.checks import BucketCheck, Check, LeaseCheck, SlotCheck
from runnergw.limits.interfaces import ILimitState, ISlot, RateDecision, TokenLease
from runnergw.limits.redis_connection import RedisConnection
from runnergw.limits.redis_give_back import GiveBacks
from runnergw.limits.redis_held_slots import HeldSlots
from runnergw.limits.redis_scripts import (
    ADD_TOKENS,
    ADMIT,
    FREE_SLOT,
    LEASE_TOKENS,
    TAKE_REQUEST,
    TAKE_SLOT,
    UNDO_LEASE,
)
from runnergw.limits.redis_undo import UNDO_KEPT_MS, Undo, Undoing

__all__ = ["DAY_KEPT", "RedisLimitState"]

DAY_KEPT = 3 * 86400
"""Seconds a day's totals stay in Redis after their last change."""

_SEEN_MOST = 65536
"""Subjects whose last lease is remembered (bounded memory: forgotten all at once)."""

_FIRST_POLL = 0.02
_LONGEST_POLL = 0.25
"""A request waiting for a slot asks again after 20 ms, then twice as long each time up to
250 ms: a place freed on another node is seen within that."""


def _hashed(subject: str) -> str:
    return hashlib.sha256(subject.encode()).hexdigest()[:32]


def _decision(reply: list[Any], burst: int) -> RateDecision:
    allowed, available, reset, retry = reply
    return RateDecision(allowed=bool(allowed), limit=burst, remaining=int(float(available)),
                        reset_after=float(reset), retry_after=float(retry))


@attrs.frozen
class _Part:
    """One check of an ``ADMIT`` call: its keys and arguments, and its slot id."""

    check: Check
    keys: list[str]
    args: list[str | int]
    slot_id: str = ""

    def fill(self, state: RedisLimitState, reply: Any) -> None:
        """Give the check its answer (a slot refused but waited for stays unanswered)."""
        check = self.check
        if isinstance(check, BucketCheck):
            check.answer(_decision(reply, check.burst))
        elif isinstance(check, SlotCheck):
            if reply == 1:
                check.answer(state.held.hold(self.keys[0], self.slot_id))
            elif check.wait <= 0:
                check.answer(None)
        else:
            check.answer(*state._leased(reply, check.key, check.day, check.limit,
                                        check.lease))


@implementer(ILimitState)
class RedisLimitState:
    """Buckets, slots and daily totals in Redis; every answer is a Deferred, failing with
    ``RedisUnavailable`` or ``RedisError`` when Redis cannot give it."""

    log = Logger()

    def __init__(self, connection: RedisConnection, clock: IReactorTime, prefix: str,
                 slot_expiry: float) -> None:
        self.connection = connection
        self.clock = clock
        self.prefix = prefix
        self.slot_expiry = slot_expiry
        self._node = os.urandom(6).hex()
        self._next_id = 0
        self._undoing = Undoing(connection, clock)
        self._kept_ms = UNDO_KEPT_MS + math.ceil(connection.stuck_after * 1000)
        """Milliseconds a lease and an undo marker stay in Redis: ``UNDO_KEPT_MS`` more than
        a call's connection is waited for, so that the undo of a call whose answer was lost
        with its connection still finds what the call did (however long ``redisTimeout``)."""
        self.give_backs = GiveBacks(connection, clock, self._undoing, DAY_KEPT, self._kept_ms)
        """Slots and tokens given back, sent together before the next call (a check sees
        them)."""
        connection.before_call = self.give_backs.send
        self.held = HeldSlots(connection, clock, slot_expiry, self._gone_key, self.give_backs)
        """The slots this node holds."""
        self._seen_totals: dict[str, tuple[str, int, int]] = {}
        """Subject → (day, tokens, quota) as the last lease of this node left them."""

    def key(self, kind: str, subject: str) -> str:
        """The Redis key of a subject's bucket (``rate``) or slots (``slots``)."""
        return f"{self.prefix}{kind}:{_hashed(subject)}"

    def _named(self) -> str:
        """A name for one slot or lease, unique in the cluster."""
        self._next_id += 1
        return f"{self._node}:{self._next_id}"

    def day_key(self, day: str) -> str:
        """The Redis key of a day's token totals."""
        return f"{self.prefix}day:{day}"

    # Rate limits.

    def take_request(self, key: str, per_minute: int, burst: int) -> Deferred[RateDecision]:
        taken = TAKE_REQUEST.run(self.connection, [self.key("rate", key)], [per_minute, burst])
        return taken.addCallback(_decision, burst)

    # Concurrency.

    def acquire_slot(self, key: str, limit: int, wait: float) -> Deferred[ISlot | None]:
        slots_key = self.key("slots", key)
        slot_id = self._named()
        ends = self.clock.seconds() + wait
        timer: list[IDelayedCall] = []
        gave_up: list[bool] = []

        def cancel(_: Deferred[ISlot | None]) -> None:
            gave_up.append(True)
            if timer and timer[0].active():
                timer[0].cancel()

        result: Deferred[ISlot | None] = Deferred(cancel)

        def attempt(pause: float) -> None:
            timer.clear()
            TAKE_SLOT.run(self.connection, [slots_key, self._gone_key(slot_id)],
                          [limit, slot_id, repr(self.slot_expiry)],
                          late=lambda outcome: outcome == 0 or self._free(slots_key, slot_id)
                          ).addCallbacks(lambda taken: answered(taken, pause), failed)

        def answered(taken: int, pause: float) -> None:
            if taken:
                slot = self.held.hold(slots_key, slot_id)
                if gave_up:
                    slot.release()
                else:
                    result.callback(slot)
                return
            if gave_up:
                return
            left = ends - self.clock.seconds()
            if left <= 0:
                result.callback(None)
                return
            timer.append(self.clock.callLater(min(pause, left), attempt,
                                              min(_LONGEST_POLL, pause * 2)))

        def failed(failure: Any) -> None:
            if not gave_up:
                result.errback(failure)

        attempt(_FIRST_POLL)
        return result

    def _gone_key(self, slot_id: str) -> str:
        return f"{self.prefix}gone:{slot_id}"

    def _free(self, slots_key: str, slot_id: str) -> None:
        """Give back a slot taken by a call that missed its deadline, as soon as Redis
        answers (a take or a refresh of it reaching Redis afterwards does nothing)."""
        self._undoing.add(Undo(FREE_SLOT, [slots_key, self._gone_key(slot_id)],
                               [slot_id, self._kept_ms], "a concurrency slot"))

    # Daily token totals.

    def tokens_used(self, key: str, day: str) -> int | Deferred[int]:
        """The total the last lease of this node saw, while it left some of the quota
        (saving a round trip; the lease that follows is the atomic admission and sees
        what other nodes counted since); else the total in Redis."""
        seen = self._seen_totals.get(key)
        if seen is not None and seen[0] == day and seen[1] < seen[2]:
            return seen[1]
        used = self.connection.call("HGET", self.day_key(day), key)
        return used.addCallback(lambda value: int(value or 0))

    def lease_tokens(self, key: str, day: str, limit: int, want: int, need: int = 1,
                     lease: TokenLease | None = None) -> Deferred[tuple[int, int]]:
        keys = [self.day_key(day), f"{self.prefix}lease:{self._named()}"]

        def late(outcome: Any) -> None:
            if isinstance(outcome, Failure) or int(outcome[0]) > 0:  # granted (or maybe)
                self._undo_lease(keys, key)

        leased = LEASE_TOKENS.run(self.connection, keys,
                                  [key, limit, want, need, DAY_KEPT, self._kept_ms], late=late)
        return leased.addCallback(self._leased, key, day, limit, lease)

    def _undo_lease(self, keys: list[str], key: str) -> None:
        """Give back what the lease named by ``keys`` granted ``key``, once Redis answers
        (a lease reaching Redis afterwards grants nothing)."""
        self._undoing.add(Undo(UNDO_LEASE, keys, [key, DAY_KEPT, self._kept_ms],
                               "a lease of tokens"))

    def _leased(self, reply: list[int], key: str, day: str, limit: int,
                lease: TokenLease | None) -> tuple[int, int]:
        granted, left = int(reply[0]), int(reply[1])
        if len(self._seen_totals) >= _SEEN_MOST:
            self._seen_totals.clear()
        self._seen_totals[key] = (day, limit - left, limit)
        if lease is not None:
            lease.hold(self, granted)
        return granted, left

    # A request's checks together.

    gathers_checks = True
    """Each call is a round trip: a request's checks wait to be made in one."""

    def admit(self, checks: Sequence[Check]) -> Deferred[None]:
        """The checks in one call (``ADMIT``), up to the first refused. A slot not free
        that may be waited for is then asked for alone (``acquire_slot``), and the checks
        after it made once it is taken. Whatever the call took after its caller gave up
        (cancelled, or past its deadline) is given back."""
        parts = [self._part(check) for check in checks]
        keys = [key for part in parts for key in part.keys]
        args = [arg for part in parts for arg in part.args]
        stage: list[Deferred[Any]] = []
        gave_up: list[bool] = []

        def cancel(_: Deferred[None]) -> None:
            gave_up.append(True)
            if stage:
                stage[0].cancel()  # the wait for a slot, or the checks after it

        result: Deferred[None] = Deferred(cancel)

        def answered(replies: list[Any]) -> None:
            if gave_up:
                self._undo_admitted(parts, replies)
                return
            for part, reply in zip(parts, replies, strict=False):
                part.fill(self, reply)
            last = parts[len(replies) - 1] if replies else None
            if last is None or last.check.answered:
                result.callback(None)
                return
            # A slot not free yet, waited for.
            check, rest = last.check, checks[len(replies):]
            waited = self.acquire_slot(check.key, check.limit, check.wait)
            waited.addCallback(check.answer)
            waited.addCallback(lambda _: None if check.refused or not rest else self.admit(rest))
            stage.append(waited)
            waited.chainDeferred(result)

        def failed(failure: Failure) -> None:
            if not gave_up:
                result.errback(failure)

        ADMIT.run(self.connection, keys, args,
                  late=lambda outcome: self._undo_admitted(parts, outcome)
                  ).addCallbacks(answered, failed)
        return result

    def _part(self, check: Check) -> _Part:
        if isinstance(check, BucketCheck):
            return _Part(check, [self.key("rate", check.key)],
                         ["rate", check.per_minute, check.burst])
        if isinstance(check, SlotCheck):
            slot_id = self._named()
            return _Part(check, [self.key("slots", check.key), self._gone_key(slot_id)],
                         ["slot", check.limit, slot_id, repr(self.slot_expiry)], slot_id)
        return _Part(check, [self.day_key(check.day), f"{self.prefix}lease:{self._named()}"],
                     ["lease", check.key, check.limit, check.want, check.need, DAY_KEPT,
                      self._kept_ms])

    def _undo_admitted(self, parts: list[_Part], outcome: Any) -> None:
        """What an ``ADMIT`` took after its caller gave up (``outcome``: its replies, or a
        ``Failure`` when it may or may not have run): slots freed, leases undone."""
        unknown = isinstance(outcome, Failure)
        replies = [] if unknown else outcome
        for index, part in enumerate(parts):
            reply = replies[index] if index < len(replies) else None
            if isinstance(part.check, SlotCheck) and (unknown or reply == 1):
                self._free(part.keys[0], part.slot_id)
            elif isinstance(part.check, LeaseCheck) and (unknown or (
                    reply is not None and int(reply[0]) > 0)):
                self._undo_lease(part.keys, part.check.key)

    def add_tokens(self, key: str, day: str, count: int) -> Deferred[Any]:
        return ADD_TOKENS.run(self.connection, [self.day_key(day)], [key, count, DAY_KEPT])

    def settle_lease(self, key: str, day: str, lease: TokenLease, used: int) -> Deferred[Any]:
        """What was leased and not used is given back, what was used beyond it counted."""
        return self.add_tokens(key, day, used - lease.tokens)

    def day_totals(self, day: str) -> Deferred[dict[str, int]]:
        """Every subject's tokens on ``day``, as the cluster counted them."""
        read = self.connection.call("HGETALL", self.day_key(day))
        return read.addCallback(lambda flat: {
            flat[i].decode("utf-8", "replace"): int(flat[i + 1])
            for i in range(0, len(flat), 2)})

    def stop(self) -> None:
        """Stop refreshing slots (a node that stops lets them expire) and close; the undo
        steps that could not be sent (those waiting to connect included) are logged."""
        self.held.stop()
        self.give_backs.send()
        self.connection.close()
        self._undoing.stop()
