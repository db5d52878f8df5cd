"""Undoing in Redis what a call did after its caller gave up on it.

A slot take or a lease that misses its deadline fails (the request is refused, or counted
on this node), yet Redis may run it later: a slow Redis answers after all, or a connection
given up was read by Redis before it saw it closed. What it took is then given back by an
undo step named after the call (its slot id, its lease id): on the same connection the step
runs after the call; on another one it may run first, and leaves a marker that makes the
call do nothing. Steps are sent again until Redis answers them (running one twice does
nothing more).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.limits.redis_connection import RedisConnection, RedisError, RedisUnavailable
from runnergw.limits.redis_scripts import Script

__all__ = ["UNDO_KEPT_MS", "Undo", "Undoing"]

UNDO_KEPT_MS = 60_000
"""Milliseconds a lease (what it granted) and an undone call's marker stay in Redis, beyond
the time a connection is waited for: far longer than a call sent before Redis stalled waits
to run once Redis goes on. Past it, both err towards refusing: an undo reaching Redis later
(the node cut off from Redis that long after Redis ran the lease) finds nothing, and the
lease's tokens stay counted for the day; a take or a lease reaching Redis later than that
after its undo (held on the way by a relay) holds its slot until the slot expiry, its
tokens for the day."""

RETRY_EVERY = 1.0
"""Seconds between two attempts while Redis does not answer."""

_WAITING_MOST = 65536
"""Undo steps kept while Redis is away (bounded memory: the oldest are dropped, their slots
expiring on their own, their leases counted for the day)."""


@attrs.frozen
class Undo:
    """One undo step: a script, its keys and arguments, and what it undoes (for the log)."""

    script: Script
    keys: list[str]
    args: list[str | int]
    what: str
    late: bool = True
    """Undoing a call that missed its deadline (logged), not a plain release (not)."""


class Undoing:
    """Undo steps, sent now and again every ``RETRY_EVERY`` seconds until Redis answers."""

    log = Logger()

    def __init__(self, connection: RedisConnection, clock: IReactorTime) -> None:
        self.connection = connection
        self._waiting: deque[Undo] = deque()
        self._dropped = 0
        self._retry = LoopingCall(self._send_waiting)
        self._retry.clock = clock
        self._stopped = False

    def add(self, undo: Undo) -> None:
        """Undo a call that failed: now, else as soon as Redis answers."""
        if not self._stopped:
            self._send(undo)

    def _send(self, undo: Undo) -> None:
        def failed(failure: Failure) -> None:
            if not failure.check(RedisUnavailable):  # else its late outcome tells
                self._late(failure, undo)

        undo.script.run(self.connection, undo.keys, undo.args,
                        late=lambda outcome: self._late(outcome, undo)).addCallbacks(
            lambda reply: self._done(reply, undo), failed)

    def _late(self, outcome: Any, undo: Undo) -> None:
        if not isinstance(outcome, Failure):
            self._done(outcome, undo)
        elif outcome.check(RedisError) and not str(outcome.value).startswith("NOSCRIPT"):
            self.log.error("Could not undo {what} in Redis: {reason}", what=undo.what,
                           reason=outcome.getErrorMessage(), event="limiter_undo_failed")
        else:
            self._wait(undo)

    def _done(self, reply: Any, undo: Undo) -> None:
        if undo.late:
            self.log.debug("Undid {what} in Redis (a call that missed its deadline)",
                           what=undo.what, reply=reply, event="limiter_undone")

    def _wait(self, undo: Undo) -> None:
        if self._stopped:
            return
        if len(self._waiting) >= _WAITING_MOST:
            self._waiting.popleft()
            self._dropped += 1
            if self._dropped == 1:
                self.log.warn("Too many undo steps wait for Redis: the oldest are dropped",
                              event="limiter_undo_dropped")
        self._waiting.append(undo)
        if not self._retry.running:
            self._retry.start(RETRY_EVERY, now=False)

    def _send_waiting(self) -> None:
        waiting, self._waiting = self._waiting, deque()
        if not waiting:
            self._retry.stop()
            self._dropped = 0
            return
        for undo in waiting:
            self._send(undo)

    def stop(self) -> None:
        """Send nothing more; the steps still waiting for Redis are dropped, and logged."""
        self._stopped = True
        if self._waiting:
            self.log.warn("{steps} undo steps could not reach Redis before the stop: a slot "
                          "among them is free after limits.slotExpiry, a lease's tokens stay "
                          "counted for the day", steps=len(self._waiting),
                          event="limiter_undo_lost")
        self._waiting.clear()
        if self._retry.running:
            self._retry.stop()
