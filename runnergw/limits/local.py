"""Limit state kept in this process: right for one gateway node."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from zope.interface import implementer

from runnergw.limits.checks import Check, admit_in_turn
from runnergw.limits.interfaces import ILimitState, ISlot, RateDecision, TokenLease

__all__ = ["LocalLimitState"]

_PRUNE_EVERY = 4096
"""Bucket updates between two sweeps of the buckets that refilled (bounded memory)."""


@implementer(ISlot)
class _Slot:
    """A place under a key's concurrency limit."""

    __slots__ = ("_key", "_state")

    def __init__(self, state: LocalLimitState, key: str) -> None:
        self._state: LocalLimitState | None = state
        self._key = key

    def release(self) -> None:
        state, self._state = self._state, None
        if state is not None:
            state._release(self._key)


class _Waiter:
    """A request waiting for a slot, with the timer that ends its wait."""

    __slots__ = ("result", "timer")

    def __init__(self, result: Deferred[ISlot | None], timer: IDelayedCall) -> None:
        self.result = result
        self.timer = timer


@implementer(ILimitState)
class LocalLimitState:
    """Token buckets, slot counts and daily token totals in dictionaries; every answer is
    immediate (a Deferred only for a request that waits for a slot)."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._buckets: dict[str, tuple[float, float, float]] = {}
        """key → (requests available, when they were counted, when the bucket is full
        again at its own rate)."""
        self._bucket_updates = 0
        self._slots: dict[str, int] = {}
        self._waiters: dict[str, deque[_Waiter]] = {}
        self._releases: deque[str] = deque()
        """Places given back while a place was being handed to a waiter: handed on once
        that is done, not from inside it."""
        self._handing_over = False
        self._days: dict[str, dict[str, int]] = {}
        """Day → key → tokens counted: the current day and the one before (streams admitted
        before midnight still take from their own day); older days are forgotten."""

    # Rate limits: a token bucket per key.

    def take_request(self, key: str, per_minute: int, burst: int) -> RateDecision:
        now = self.clock.seconds()
        rate = per_minute / 60.0
        available, then, _ = self._buckets.get(key, (float(burst), now, now))
        available = min(float(burst), available + (now - then) * rate)
        allowed = available >= 1.0
        if allowed:
            available -= 1.0
        reset_after = (burst - available) / rate
        self._buckets[key] = (available, now, now + reset_after)
        self._bucket_updates += 1
        if self._bucket_updates >= _PRUNE_EVERY:
            self._prune_buckets(now)
        return RateDecision(
            allowed=allowed,
            limit=burst,
            remaining=int(available),
            reset_after=reset_after,
            retry_after=0.0 if allowed else (1.0 - available) / rate,
        )

    def _prune_buckets(self, now: float) -> None:
        """Forget buckets full again (they start full anyway), each at its own rate: roles
        differ, and a bucket forgotten early would give its subject a new burst."""
        self._bucket_updates = 0
        for key, (_, _, full_at) in list(self._buckets.items()):
            if now >= full_at:
                del self._buckets[key]

    # Concurrency: a count per key, and requests waiting for a place in arrival order.

    def acquire_slot(self, key: str, limit: int, wait: float) -> ISlot | None | Deferred[
            ISlot | None]:
        taken = self._slots.get(key, 0)
        if taken < limit:
            self._slots[key] = taken + 1
            return _Slot(self, key)
        if wait <= 0:
            return None
        queue = self._waiters.setdefault(key, deque())

        def give_up(result: Deferred[ISlot | None]) -> None:
            self._forget(key, waiter)
            if waiter.timer.active():
                waiter.timer.cancel()

        def expire() -> None:
            self._forget(key, waiter)
            waiter.result.callback(None)

        waiter = _Waiter(Deferred(give_up), self.clock.callLater(wait, expire))
        queue.append(waiter)
        return waiter.result

    def _forget(self, key: str, waiter: _Waiter) -> None:
        queue = self._waiters.get(key)
        if queue is not None and waiter in queue:
            queue.remove(waiter)
            if not queue:
                del self._waiters[key]

    def _release(self, key: str) -> None:
        self._releases.append(key)
        if self._handing_over:
            # Given back by a waiter's exchange that ended as soon as it got the place (its
            # client had left, a later filter refused it): one after the other, here, rather
            # than a stack that grows with every such waiter in the queue.
            return
        self._handing_over = True
        try:
            while self._releases:
                self._release_one(self._releases.popleft())
        finally:
            self._handing_over = False

    def _release_one(self, key: str) -> None:
        queue = self._waiters.get(key)
        if queue:
            # The place goes straight to the longest waiter: the count does not change.
            waiter = queue.popleft()
            if not queue:
                del self._waiters[key]
            waiter.timer.cancel()
            waiter.result.callback(_Slot(self, key))
            return
        taken = self._slots.get(key, 0) - 1
        if taken > 0:
            self._slots[key] = taken
        else:
            self._slots.pop(key, None)

    # Daily token totals.

    def _totals(self, day: str) -> dict[str, int]:
        totals = self._days.get(day)
        if totals is None:
            if self._days and day < min(self._days):
                # A late report of a day long over: it no longer limits anyone.
                return {}
            totals = self._days[day] = {}
            while len(self._days) > 2:
                del self._days[min(self._days)]
        return totals

    def tokens_used(self, key: str, day: str) -> int:
        return self._totals(day).get(key, 0)

    def lease_tokens(self, key: str, day: str, limit: int, want: int, need: int = 1,
                     lease: TokenLease | None = None) -> tuple[int, int]:
        totals = self._totals(day)
        used = totals.get(key, 0)
        left = limit - used
        if left < need or left <= 0:
            return 0, max(0, left)
        granted = min(want, left)
        totals[key] = used + granted
        if lease is not None:
            lease.hold(self, granted)
        return granted, left - granted

    def settle_lease(self, key: str, day: str, lease: TokenLease, used: int) -> None:
        """One store: what was leased and not used is given back, what was used beyond
        the lease counted."""
        self.add_tokens(key, day, used - lease.tokens)

    def add_tokens(self, key: str, day: str, count: int) -> None:
        totals = self._totals(day)
        totals[key] = max(0, totals.get(key, 0) + count)

    # A request's checks together.

    gathers_checks = False
    """Each check is answered at once: a request's checks are made as they are given."""

    def admit(self, checks: Sequence[Check]) -> Deferred[None] | None:
        return admit_in_turn(self, checks)

    def seed(self, day: str, totals: Mapping[str, int]) -> None:
        """Start ``day`` from the usage already recorded (the ledger, after a restart),
        before any request is counted."""
        self._totals(day).update(totals)
