"""The drain's sequence, on a simulated clock: readiness, the delay before its clock starts,
the grace, and what is ended when it is over."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.inflight import InFlight
from runnergw.config.shutdown import ShutdownSettings
from runnergw.drain import CLOSE_WAIT, Drain
from runnergw.health import Readiness
from runnergw.http.factory import GatewayHTTPFactory

__all__ = ["DrainSequenceTests", "EndOfGraceTests", "ServiceManagerTests"]


class _Notifier:
    """Records what the service manager would be sent."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def send(self, *fields: str) -> bool:
        self.messages.append("\n".join(fields))
        return True

    def stopping(self, status: str) -> None:
        self.send("STOPPING=1", f"STATUS={status}")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text}")


class _Connection:
    """A connection busy with an exchange (closing it when idle does nothing)."""

    def close_if_idle(self) -> None:
        pass


class _Gateway:
    """The parts a drain acts on, recording what it did and when."""

    def __init__(self, testcase: SynchronousTestCase, delay: float = 5.0,
                 grace: float = 30.0) -> None:
        self.clock = Clock()
        self.readiness = Readiness()
        self.notifier = _Notifier()
        self.factory = GatewayHTTPFactory(None, self.clock)  # type: ignore[arg-type]
        self.inflight = InFlight()
        self.listening_stopped_at: float | None = None
        self.ended_at: float | None = None
        self.stopped_at: float | None = None
        self.drain = Drain(ShutdownSettings(delay, grace), self.clock,
                           readiness=self.readiness, notifier=self.notifier,  # type: ignore
                           factory=self.factory, inflight=self.inflight,
                           stop_listening=self._stop_listening,
                           end_under_way=self._end_under_way, stop=self._stop)

    def _stop_listening(self) -> Deferred[None]:
        self.listening_stopped_at = self.clock.seconds()
        return succeed(None)

    def _end_under_way(self) -> Deferred[None]:
        self.ended_at = self.clock.seconds()
        while self.inflight.count:
            self.inflight.leave()
        return succeed(None)

    def _stop(self) -> None:
        self.stopped_at = self.clock.seconds()

    def begin(self) -> None:
        self.drain.begin("SIGTERM", lambda: "status")


class DrainSequenceTests(SynchronousTestCase):
    """Readiness off at once, accepting during the delay, the grace's clock only after it."""

    def test_readiness_turns_not_ready_at_once(self) -> None:
        """A load balancer asking /readyz right after SIGTERM hears "draining"."""
        gateway = _Gateway(self)
        gateway.begin()
        self.assertEqual(gateway.readiness.reasons(), ["draining"])

    def test_listening_goes_on_during_the_readiness_delay(self) -> None:
        """New connections are taken until the readiness delay is over, refused from then."""
        gateway = _Gateway(self, delay=5.0)
        gateway.begin()
        gateway.clock.advance(4.9)
        self.assertIsNone(gateway.listening_stopped_at)
        self.assertFalse(gateway.factory.closing)
        gateway.clock.advance(0.1)
        self.assertEqual(gateway.listening_stopped_at, 5.0)
        self.assertTrue(gateway.factory.closing)

    def test_the_grace_starts_after_the_delay(self) -> None:
        """An exchange under way gets the whole grace counted from the end of the delay:
        with a 5 s delay and a 30 s grace it is still served at 34 s."""
        gateway = _Gateway(self, delay=5.0, grace=30.0)
        gateway.inflight.enter()
        gateway.begin()
        gateway.clock.advance(5.0)
        gateway.clock.advance(29.9)
        self.assertIsNone(gateway.ended_at)
        gateway.clock.advance(0.1)
        self.assertEqual(gateway.ended_at, 35.0)

    def test_stop_is_immediate_after_the_delay_when_nothing_is_under_way(self) -> None:
        """Nothing in flight: the gateway stops as soon as the readiness delay is over."""
        gateway = _Gateway(self, delay=5.0)
        gateway.begin()
        gateway.clock.advance(5.0)
        self.assertEqual(gateway.stopped_at, 5.0)
        self.assertIs(gateway.drain.clean, True)

    def test_the_wait_ends_when_the_last_exchange_finishes(self) -> None:
        """The stop follows the last exchange's end, not the end of the grace."""
        gateway = _Gateway(self, delay=5.0, grace=30.0)
        gateway.inflight.enter()
        gateway.begin()
        gateway.clock.advance(12.0)
        gateway.inflight.leave()
        self.assertEqual(gateway.stopped_at, 12.0)
        self.assertIsNone(gateway.ended_at)
        self.assertIs(gateway.drain.clean, True)

    def test_the_stop_waits_for_connections_to_close(self) -> None:
        """A connection still open after the exchanges (sending its last bytes) delays the
        stop, at most CLOSE_WAIT seconds."""
        gateway = _Gateway(self, delay=0.0)
        connection: Any = _Connection()
        gateway.factory.connections.add(connection)
        gateway.begin()
        gateway.clock.advance(0.0)
        self.assertIsNone(gateway.stopped_at)
        gateway.clock.advance(CLOSE_WAIT)
        self.assertEqual(gateway.stopped_at, CLOSE_WAIT)

    def test_a_closed_connection_lets_the_stop_go_on(self) -> None:
        """The stop goes on as soon as the last connection closed."""
        gateway = _Gateway(self, delay=0.0)
        connection: Any = _Connection()
        gateway.factory.connections.add(connection)
        gateway.begin()
        gateway.clock.advance(0.5)
        gateway.factory.connections.discard(connection)
        self.assertEqual(gateway.stopped_at, 0.5)


class EndOfGraceTests(SynchronousTestCase):
    """What is left when the grace is over, and a second signal."""

    def test_grace_over_ends_what_is_left_and_is_not_clean(self) -> None:
        """An exchange outlasting the grace is ended; the drain says it was not clean (the
        exit status is then non-zero)."""
        gateway = _Gateway(self, delay=1.0, grace=2.0)
        gateway.inflight.enter()
        gateway.begin()
        gateway.clock.advance(1.0)
        gateway.clock.advance(2.0)
        self.assertEqual((gateway.ended_at, gateway.stopped_at), (3.0, 3.0))
        self.assertIs(gateway.drain.clean, False)
        self.assertEqual(gateway.drain.cut, 1)

    def test_second_signal_skips_the_waits(self) -> None:
        """A second SIGTERM during the delay refuses connections and ends what is under way
        at once."""
        gateway = _Gateway(self, delay=5.0, grace=30.0)
        gateway.inflight.enter()
        gateway.begin()
        gateway.clock.advance(1.0)
        gateway.drain.begin("SIGINT", lambda: "status")
        self.assertEqual((gateway.listening_stopped_at, gateway.ended_at, gateway.stopped_at),
                         (1.0, 1.0, 1.0))
        self.assertIs(gateway.drain.clean, False)

    def test_second_signal_during_the_grace(self) -> None:
        """A second SIGTERM during the grace ends what is left at once."""
        gateway = _Gateway(self, delay=1.0, grace=30.0)
        gateway.inflight.enter()
        gateway.begin()
        gateway.clock.advance(3.0)
        gateway.drain.begin("SIGTERM", lambda: "status")
        self.assertEqual(gateway.stopped_at, 3.0)
        gateway.clock.advance(60.0)
        self.assertEqual(gateway.ended_at, 3.0)

    def test_second_signal_with_nothing_under_way_is_clean(self) -> None:
        """Cutting short a drain with nothing in flight cuts nothing: clean."""
        gateway = _Gateway(self)
        gateway.begin()
        gateway.drain.begin("SIGTERM", lambda: "status")
        self.assertIs(gateway.drain.clean, True)

    def test_signals_after_the_drain_are_ignored(self) -> None:
        """Once the normal stop began, another signal changes nothing."""
        gateway = _Gateway(self, delay=0.0)
        gateway.begin()
        gateway.clock.advance(0.0)
        gateway.stopped_at = None
        gateway.drain.begin("SIGTERM", lambda: "status")
        self.assertIsNone(gateway.stopped_at)


class ServiceManagerTests(SynchronousTestCase):
    """What systemd hears during a drain."""

    def test_stopping_then_timeout_extensions(self) -> None:
        """STOPPING=1 at once, and the stop timeout is extended to cover delay and grace
        (plus a margin), so the service manager does not kill a legitimate drain."""
        gateway = _Gateway(self, delay=5.0, grace=30.0)
        gateway.inflight.enter()
        gateway.begin()
        self.assertEqual(gateway.notifier.messages[:2],
                         ["STOPPING=1\nSTATUS=status", "EXTEND_TIMEOUT_USEC=45000000"])
        gateway.clock.advance(5.0)
        self.assertIn("EXTEND_TIMEOUT_USEC=40000000", gateway.notifier.messages)

    def test_status_tells_the_grace_left(self) -> None:
        """The drain's part of the status line counts what is left and the grace left."""
        gateway = _Gateway(self, delay=5.0, grace=30.0)
        gateway.inflight.enter()
        gateway.begin()
        self.assertEqual(gateway.drain.describe(), "draining: 1 left, 30 s of grace left")
        gateway.clock.advance(5.0)
        gateway.clock.advance(10.0)
        self.assertEqual(gateway.drain.describe(), "draining: 1 left, 20 s of grace left")
