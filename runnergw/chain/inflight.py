"""Counting the exchanges under way, so that a reload can retire an old configuration and a
drain can stop, once the exchanges they wait for are over."""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed

__all__ = ["InFlight"]


class InFlight:
    """How many exchanges are under way, and a Deferred for the moment there are none."""

    def __init__(self) -> None:
        self.count = 0
        self._idle_waiters: list[Deferred[None]] = []

    def enter(self) -> None:
        """An exchange began."""
        self.count += 1

    def leave(self) -> None:
        """An exchange ended; the waiters for idleness are told when it was the last."""
        self.count -= 1
        if self.count == 0 and self._idle_waiters:
            waiters, self._idle_waiters = self._idle_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def when_idle(self) -> Deferred[None]:
        """Fires once no exchange is under way (at once when none is). Cancelling the
        Deferred only stops this wait."""
        if self.count == 0:
            return succeed(None)
        waiter: Deferred[None] = Deferred(lambda d: self._forget(d))
        self._idle_waiters.append(waiter)
        return waiter

    def _forget(self, waiter: Deferred[None]) -> None:
        if waiter in self._idle_waiters:
            self._idle_waiters.remove(waiter)
