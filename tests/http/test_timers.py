"""The minimum request body data rate, on its own: when its timer fires, and what it ignores."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.http.timers import BodyRateWatch

__all__ = ["BodyRateWatchTests"]


class BodyRateWatchTests(SynchronousTestCase):
    """A watch for 240 bytes per second after a 5 second grace period."""

    def setUp(self) -> None:
        """A clock, and a record of when the watch said the body was too slow."""
        self.clock = Clock()
        self.fired: list[float] = []
        self.watch = self.make(240.0, 5.0)

    def make(self, rate: float, grace: float) -> BodyRateWatch:
        """A watch that records the time it fires at."""
        return BodyRateWatch(self.clock, rate, grace,
                             lambda: self.fired.append(self.clock.seconds()))

    def trickle(self, watch: BodyRateWatch, seconds: float, per_second: int) -> None:
        """Feed ``per_second`` bytes in two halves every second, for ``seconds`` seconds."""
        for _ in range(int(seconds * 2)):
            self.clock.advance(0.5)
            if self.fired:
                return
            watch.received(per_second // 2)
            watch.waiting()

    def test_slow_body_refused_at_the_end_of_grace(self) -> None:
        """A body well below the rate is refused exactly when the grace period ends."""
        self.watch.start()
        self.watch.waiting()
        self.trickle(self.watch, 4.5, 2)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.5)
        self.assertEqual(self.fired, [5.0])

    def test_fast_body_never_refused(self) -> None:
        """A body at twice the rate is never refused, however long it takes."""
        self.watch.start()
        self.watch.waiting()
        self.trickle(self.watch, 120, 480)
        self.assertEqual(self.fired, [])
        self.watch.stop()
        self.clock.advance(1000)
        self.assertEqual(self.fired, [])

    def test_burst_then_silence(self) -> None:
        """A burst buys time in proportion: 2400 bytes last until ten seconds, then 408."""
        self.watch.start()
        self.watch.waiting()
        self.watch.received(2400)
        self.watch.waiting()
        self.clock.advance(9.75)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.25)
        self.assertEqual(self.fired, [10.0])

    def test_average_falls_below_after_grace(self) -> None:
        """A body that slows down after the grace period is refused once its average is low."""
        self.watch.start()
        self.watch.waiting()
        self.trickle(self.watch, 10, 480)
        # 4800 bytes in 10 s: the average reaches 240 bytes per second at 20 s.
        self.clock.advance(9.75)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.25)
        self.assertEqual(self.fired, [20.0])

    def test_pause_not_counted(self) -> None:
        """Time while the gateway paused reading is not the client's."""
        self.watch.start()
        self.watch.waiting()
        self.watch.received(1440)
        self.watch.waiting()
        self.clock.advance(1.0)
        self.watch.pause()
        self.clock.advance(100.0)
        self.assertEqual(self.fired, [])
        self.watch.start()
        self.watch.waiting()
        # 1440 bytes last six seconds of reading time, one of which was before the pause.
        self.clock.advance(4.75)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.25)
        self.assertEqual(self.fired, [106.0])

    def test_bytes_during_pause_count(self) -> None:
        """Bytes that arrive while paused (already in flight) still count for the client."""
        self.watch.start()
        self.watch.waiting()
        self.watch.pause()
        self.watch.received(2400)
        self.watch.waiting()
        self.clock.advance(50.0)
        self.watch.start()
        self.watch.waiting()
        self.clock.advance(9.75)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.25)
        self.assertEqual(len(self.fired), 1)

    def test_stopped_watch_never_fires(self) -> None:
        """Once the body is complete the watch is silent."""
        self.watch.start()
        self.watch.waiting()
        self.watch.received(10)
        self.watch.waiting()
        self.watch.stop()
        self.clock.advance(100.0)
        self.assertEqual(self.fired, [])

    def test_disabled(self) -> None:
        """A rate of 0 disables the check: the slowest body is never refused by it."""
        watch = self.make(0.0, 5.0)
        watch.start()
        watch.waiting()
        self.trickle(watch, 60, 0)
        self.assertEqual(self.fired, [])
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_grace_configurable(self) -> None:
        """A longer grace period delays the first check."""
        watch = self.make(240.0, 30.0)
        watch.start()
        watch.waiting()
        self.trickle(watch, 29.5, 2)
        self.assertEqual(self.fired, [])
        self.clock.advance(0.5)
        self.assertEqual(self.fired, [30.0])

    def test_body_whole_at_once_costs_no_timer(self) -> None:
        """A body that came whole with its head is read without setting any timer."""
        self.watch.start()
        self.watch.received(2)
        self.watch.stop()
        self.assertEqual(self.clock.getDelayedCalls(), [])
