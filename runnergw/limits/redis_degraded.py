"""What each limit does while Redis does not answer: refuse, or count on this node alone
with its share of the limit; the switch back once Redis answers again; and unused quota
leases given back to the store that granted them."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from runnergw.chain.exchange import Reject
from runnergw.config.limits_backend import LIMIT_NAMES, LimitsSettings
from runnergw.limits.checks import Check, admit_in_turn
from runnergw.limits.interfaces import ILimitState, TokenLease
from runnergw.limits.local import LocalLimitState
from runnergw.limits.redis_connection import RedisError, RedisNotSent, RedisUnavailable
from runnergw.limits.redis_state import RedisLimitState

__all__ = ["DegradableLimitState"]

PROBE_EVERY = 1.0
"""Seconds between two PINGs while Redis is away."""

RETRY_AFTER = str(math.ceil(PROBE_EVERY) + 1)
"""``Retry-After`` of a request refused while Redis is away."""


def _share(limit: int, nodes: int) -> int:
    """This node's share of a limit (at least 1: a limit of 0 is never configured)."""
    return max(1, limit // nodes)


@implementer(ILimitState)
class DegradableLimitState:
    """The Redis state while Redis answers; when a call fails or passes its deadline,
    Redis counts as away: each limit then refuses (``closed``: the call fails with a 503
    ``Reject`` carrying ``Retry-After``) or is counted in this process with the limit
    divided by ``limits.nodes`` (``open``), until a PING, sent every second, is answered.

    Every switch is logged once per limit (events ``limiter_degraded`` and
    ``limiter_recovered``); ``degraded()`` is what the metrics show.

    A request's quota lease may come partly from Redis and partly from this node; at its end
    each part not used goes back where it was taken (``settle_lease``). What goes back to
    Redis while it does not answer is kept here and sent once it answers again.
    """

    log = Logger()

    def __init__(self, shared: RedisLimitState, settings: LimitsSettings,
                 clock: IReactorTime, where: str) -> None:
        self.shared = shared
        self.settings = settings
        self.nodes = max(1, settings.nodes)
        self.local = LocalLimitState(clock)
        self.where = where
        self._away = False
        self._owed: dict[tuple[str, str], int] = {}
        """(day, subject) → tokens to give back to Redis once it answers (negative)."""
        self._probe = LoopingCall(self._ping)
        self._probe.clock = clock
        self._stopped = False
        """True once stopped: calls failing as the connection closes are no switch."""

    def degraded(self) -> dict[str, bool]:
        """Limit name → True while it is not counted in Redis."""
        return {name: self._away for name in LIMIT_NAMES}

    def _guarded(self, limit: str, call: Callable[[], Any],
                 fallback: Callable[[], Any]) -> Any:
        """``call``'s answer while Redis answers, else what ``limit``'s choice says."""
        if self._away:
            return self._degraded_answer(limit, fallback)
        answer = call()
        if not isinstance(answer, Deferred):
            return answer  # known without asking Redis
        return answer.addErrback(self._failed, limit, fallback)

    def _failed(self, failure: Failure, limit: str, fallback: Callable[[], Any]) -> Any:
        failure.trap(RedisUnavailable, RedisError)
        self._went_away(failure.getErrorMessage())
        return self._degraded_answer(limit, fallback)

    def _degraded_answer(self, limit: str, fallback: Callable[[], Any]) -> Any:
        if self.settings.choice(limit) == "open":
            return fallback()
        raise Reject(503, "limits cannot be checked right now: retry shortly",
                     headers=(("Retry-After", RETRY_AFTER),),
                     reason=f"{limit} state unavailable (Redis)")

    def _went_away(self, reason: str) -> None:
        if self._away or self._stopped:
            return
        self._away = True
        for name in LIMIT_NAMES:
            choice = self.settings.choice(name)
            self.log.warn(
                "Redis at {where} is not answering ({reason}): {limit} now "
                + ("refuses requests (fail closed)" if choice == "closed" else
                   "counts on this node with 1/{nodes} of each limit (fail open)"),
                where=self.where, reason=reason, limit=name, nodes=self.nodes,
                choice=choice, event="limiter_degraded")
        self._start_probe()

    def _start_probe(self) -> None:
        if not self._probe.running and not self._stopped:
            self._probe.start(PROBE_EVERY, now=False)

    def _ping(self) -> None:
        self.shared.connection.call("PING").addCallbacks(self._came_back, lambda _: None)

    def _came_back(self, _: Any) -> None:
        if self._probe.running:
            self._probe.stop()
        was_away, self._away = self._away, False
        owed, self._owed = self._owed, {}
        for (day, key), count in owed.items():
            self._give_back(key, day, count)
        self.shared.give_backs.send()
        if was_away:
            for name in LIMIT_NAMES:
                self.log.info("Redis at {where} answers again: {limit} is counted in Redis",
                              where=self.where, limit=name, event="limiter_recovered")

    # ILimitState, each method guarded by its limit.

    def take_request(self, key: str, per_minute: int, burst: int) -> Any:
        return self._guarded(
            "rateLimit", lambda: self.shared.take_request(key, per_minute, burst),
            lambda: self.local.take_request(key, _share(per_minute, self.nodes),
                                            _share(burst, self.nodes)))

    def acquire_slot(self, key: str, limit: int, wait: float) -> Any:
        return self._guarded(
            "concurrency", lambda: self.shared.acquire_slot(key, limit, wait),
            lambda: self.local.acquire_slot(key, _share(limit, self.nodes), wait))

    def tokens_used(self, key: str, day: str) -> Any:
        return self._guarded("quota", lambda: self.shared.tokens_used(key, day),
                             lambda: self.local.tokens_used(key, day))

    def lease_tokens(self, key: str, day: str, limit: int, want: int, need: int = 1,
                     lease: TokenLease | None = None) -> Any:
        return self._guarded(
            "quota", lambda: self.shared.lease_tokens(key, day, limit, want, need, lease),
            lambda: self.local.lease_tokens(key, day, _share(limit, self.nodes), want, need,
                                            lease))

    gathers_checks = True
    """A request's checks wait to be made in one round trip."""

    def admit(self, checks: Sequence[Check]) -> Any:
        """The checks in one Redis call; while Redis is away (or when the call fails),
        each check as its limit's choice says, in turn."""
        if self._away:
            return admit_in_turn(self, checks)
        return self.shared.admit(checks).addErrback(self._admit_failed, checks)

    def _admit_failed(self, failure: Failure, checks: Sequence[Check]) -> Any:
        failure.trap(RedisUnavailable, RedisError)
        self._went_away(failure.getErrorMessage())
        return admit_in_turn(self, [check for check in checks if not check.answered])

    def settle_lease(self, key: str, day: str, lease: TokenLease, used: int) -> Any:
        """The tokens used are taken from the lease's parts in the order they were granted;
        each part's rest goes back to its store (Redis' once Redis answers); tokens used
        beyond the lease are counted as ``add_tokens`` counts them."""
        given_back, beyond = lease.settlement(used)
        for store, count in given_back.items():
            if store is self.shared:
                self._give_back(key, day, count)
            elif count:
                store.add_tokens(key, day, count)  # type: ignore[attr-defined]
        return self.add_tokens(key, day, beyond) if beyond else None

    def _give_back(self, key: str, day: str, count: int) -> None:
        """Give ``count`` tokens of a lease back to Redis: now when it answers, else once
        it answers again."""
        if not count:
            return
        if self._away or not self.shared.connection.connected:
            self._owe(key, day, count)
            return
        self._count_in_redis(key, day, count, lambda: self._owe(key, day, count))

    def _owe(self, key: str, day: str, count: int) -> None:
        self._owed[(day, key)] = self._owed.get((day, key), 0) + count
        self._start_probe()

    def add_tokens(self, key: str, day: str, count: int) -> Any:
        """Usage that happened is counted: in Redis while it answers, else in this process
        (each node's ledger keeps it either way; it is not added to Redis later)."""
        if self._away:
            return self.local.add_tokens(key, day, count)
        return self._count_in_redis(key, day, count,
                                    lambda: self.local.add_tokens(key, day, count))

    def _count_in_redis(self, key: str, day: str, count: int,
                        not_counted: Callable[[], Any]) -> Deferred[Any]:
        """Add ``count`` to the subject's total in Redis (with what other requests gave
        back, before this node's next check: ``GiveBacks``), ``not_counted`` when it surely
        was not. A count sent is counted even when its answer does not come in time (a
        stalled Redis runs what was sent before it stalled when it goes on), also when it
        waited for the connection to open: it is never counted twice. (Only a count sent on
        a connection a stalled Redis had not yet taken in when it was given up is counted
        neither there nor here, the ledger only: a node's first call to a stalled Redis.)"""
        sent = self.shared.give_backs.count(self.shared.day_key(day), key, count)

        def failed(failure: Failure) -> None:
            failure.trap(RedisUnavailable, RedisError)
            self._went_away(failure.getErrorMessage())
            if failure.check(RedisError, RedisNotSent):
                not_counted()

        return sent.addErrback(failed)

    def stop(self) -> None:
        """Stop probing and close the connection (the calls it fails are no switch)."""
        self._stopped = True
        if self._probe.running:
            self._probe.stop()
        if self._owed:
            self.log.warn("Redis at {where} did not answer again before the stop: {tokens} "
                          "unused leased tokens of {subjects} subjects stay counted there",
                          where=self.where, tokens=-sum(self._owed.values()),
                          subjects=len(self._owed), event="limiter_give_back_lost")
            self._owed = {}
        self.shared.stop()
