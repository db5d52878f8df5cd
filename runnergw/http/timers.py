"""Client-side timer settings, and the watch on how fast a request body arrives."""

from __future__ import annotations

from collections.abc import Callable

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime

__all__ = ["BodyRateWatch", "ConnectionTimeouts"]


@attrs.frozen
class ConnectionTimeouts:
    """Client-side timers, all in seconds, and the minimum request body data rate."""

    header: float = 10.0
    read: float = 30.0
    write: float = 30.0
    keep_alive: float = 75.0
    min_body_data_rate: float = 240.0
    """Bytes per second a request body must average once the grace period is over
    (Kestrel's MinRequestBodyDataRate); 0 disables the check."""
    min_body_data_rate_grace: float = 5.0
    """Reading time before that average is enforced."""


class BodyRateWatch:
    """Refuses a request body that arrives slower than a minimum average rate.

    The average is taken over the gateway's reading time only: from when the exchange asks
    for the body, less every pause the gateway makes itself (backpressure from the runner), so
    a client is never blamed for the gateway's own waits. Nothing is enforced during the first
    ``grace`` seconds of reading time; after them, the bytes received must average at least
    ``rate`` per second at every moment.

    Rather than a heartbeat, one timer is set for the reading time at which the average would
    fall to the minimum (``received / rate``, at least ``grace``), whenever the gateway waits
    for more of the body; each arriving piece moves it.
    The idle read timeout alone cannot do this: a byte every second keeps restarting it.
    """

    def __init__(self, clock: IReactorTime, rate: float, grace: float,
                 too_slow: Callable[[], object]) -> None:
        self._clock = clock
        self._rate = rate
        self._grace = grace
        self._too_slow = too_slow
        self._received = 0
        self._reading_time = 0.0
        """Reading time before the current stretch of reading."""
        self._since: float | None = None
        """When the current stretch of reading began; None while not reading."""
        self._timer: IDelayedCall | None = None

    def start(self) -> None:
        """Reading begins (the exchange asked for the body), or resumes after a pause."""
        if self._rate <= 0 or self._since is not None:
            return
        self._since = self._clock.seconds()

    def received(self, count: int) -> None:
        """``count`` more body bytes arrived (framing included: the client sent them too)."""
        self._received += count

    def waiting(self) -> None:
        """The body is not complete and the gateway waits for more: the timer is set (or
        moved) only now, so a body that came whole with its head costs no timer at all."""
        if self._since is not None:
            self._arm()

    def pause(self) -> None:
        """The gateway stopped reading: the time until ``start`` is not the client's."""
        if self._since is None:
            return
        self._reading_time += self._clock.seconds() - self._since
        self._since = None
        self._cancel()

    def stop(self) -> None:
        """The body is complete, refused or abandoned: never fire."""
        self._since = None
        self._cancel()

    def _deadline(self) -> float:
        """The reading time at which the average falls to the minimum."""
        return max(self._grace, self._received / self._rate)

    def _arm(self) -> None:
        assert self._since is not None
        elapsed = self._reading_time + self._clock.seconds() - self._since
        delay = max(0.0, self._deadline() - elapsed)
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(delay)
        else:
            self._timer = self._clock.callLater(delay, self._fire)

    def _cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self.stop()
        self._too_slow()
