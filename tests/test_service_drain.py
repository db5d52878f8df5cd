"""The gateway service drained on a simulated clock: what systemd's status line, readiness
and the listener show, from SIGTERM to the stop."""

from __future__ import annotations

import signal

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.service import GatewayService
from runnergw.systemd.notify import Notifier
from tests.helpers.node_settings import write_node
from tests.helpers.notify_socket import ServiceManagerSocket

__all__ = ["ServiceDrainTests"]


class ServiceDrainTests(SynchronousTestCase):
    """A started service, then a stop signal."""

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        self.manager = ServiceManagerSocket(self)
        self.reactor = MemoryReactorClock()
        node = write_node(self, runners=[{"host": "127.0.0.1:1", "path": "/ollama"}])
        notifier = Notifier(self.manager.name, self.reactor, monotonic=lambda: 42)
        self.service = GatewayService(node.settings, node.parts, self.reactor,
                                      notifier=notifier)
        self.addCleanup(lambda: self.service.running and self.service.stopService())
        self.service.startService()
        self.port = self.service.port
        self.stopped_listening: list[float] = []
        self.patch(self.port, "stopListening",
                   lambda: self.stopped_listening.append(self.reactor.seconds()))
        self.manager.messages()

    def sigterm(self) -> None:
        self.service.drain.begin("SIGTERM", self.service.describe)

    def test_stopping_status_names_the_drain(self) -> None:
        """systemd hears STOPPING=1 at once, with a status line saying what is left and how
        much grace, and is asked to wait for the delay and the grace."""
        self.service.factory.handler.inflight.enter()
        self.addCleanup(self.service.factory.handler.inflight.leave)
        self.sigterm()
        stopping, extend = self.manager.messages()[:2]
        self.assertEqual(stopping, "STOPPING=1\nSTATUS=serving on http://0.0.0.0:0: "
                                   "0 open connections, 1 exchange under way, 0 jobs running; "
                                   "draining: 1 left, 30 s of grace left")
        self.assertEqual(extend, "EXTEND_TIMEOUT_USEC=45000000")

    def test_readiness_off_while_still_listening(self) -> None:
        """During the readiness delay /readyz says draining and the port still listens."""
        self.sigterm()
        self.reactor.advance(4.0)
        self.assertIn("draining", self.service.readiness.reasons())
        self.assertEqual((self.stopped_listening, self.service.port), ([], self.port))

    def test_listening_ends_after_the_delay_then_the_reactor_stops(self) -> None:
        """With nothing under way, the port closes when the delay is over and the stop
        follows at once; the drain was clean."""
        self.sigterm()
        self.reactor.advance(5.0)
        self.assertEqual((self.stopped_listening, self.service.port), ([5.0], None))
        self.assertTrue(self.reactor.hasStopped)
        self.assertIs(self.service.drain.clean, True)

    def test_exchanges_ended_before_the_terminals_stop(self) -> None:
        """When the grace is over, every exchange under way is ended (its client told the
        gateway is shutting down) before the terminals stop: a job begun before a reload
        is answered 503, not failed by the stopped launcher."""
        journal: list[str] = []

        class _Client:
            def end_now(self, message: str) -> None:
                journal.append(f"ended: {message}")

        client = _Client()
        self.service.factory.handler.under_way.add(client)
        [route] = self.service.router.routes
        self.patch(route.terminal, "stop", lambda: journal.append("terminal stopped"))
        self.service._end_under_way()
        self.assertEqual(journal, ["ended: the gateway is shutting down", "terminal stopped"])
