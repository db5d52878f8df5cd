"""Counting exchanges under way and waiting for the last one."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.inflight import InFlight

__all__ = ["InFlightTests"]


class InFlightTests(SynchronousTestCase):
    """``when_idle`` fires when the last exchange ends."""

    def test_idle_at_once(self) -> None:
        """With nothing under way, the wait is over at once."""
        self.successResultOf(InFlight().when_idle())

    def test_fires_on_last_leave(self) -> None:
        """Two exchanges: the wait ends with the second, not the first."""
        inflight = InFlight()
        inflight.enter()
        inflight.enter()
        idle = inflight.when_idle()
        inflight.leave()
        self.assertNoResult(idle)
        inflight.leave()
        self.successResultOf(idle)

    def test_cancelled_wait_is_forgotten(self) -> None:
        """A cancelled wait fails with CancelledError and is not fired later."""
        inflight = InFlight()
        inflight.enter()
        idle = inflight.when_idle()
        idle.cancel()
        self.failureResultOf(idle, CancelledError)
        inflight.leave()  # must not fire the cancelled Deferred again
        self.assertEqual(inflight.count, 0)
