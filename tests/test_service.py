"""The gateway service: it listens (failing fast when it cannot), gives the HTTP server its
settings, takes its jobs directory alone, stops every route's terminal, and reloads on
SIGHUP. (``tests/test_twistd.py`` runs it under a real twistd.)"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.error import ConnectionRefusedError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.service import GatewayService
from tests.helpers.command_gateway import example
from tests.helpers.gateway import start_gateway
from tests.helpers.node_settings import Node, write_node

__all__ = ["BodyDataRateWiringTests", "JobsDirectoryTests", "ListenTests", "ReloadTests",
           "StopTests"]

_RUNNER = {"host": "127.0.0.1:1", "path": "/ollama"}


def _keep_sighup(testcase: SynchronousTestCase) -> None:
    """Put the test process's SIGHUP handler back whatever the test does."""
    previous = signal.getsignal(signal.SIGHUP)
    testcase.addCleanup(signal.signal, signal.SIGHUP, previous)


class _Answer(Protocol):
    """Sends one request and collects the answer until the server closes."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"GET /nowhere HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        self.closed.callback(self.data)


class ListenTests(TestCase):
    """Listening on ``server.address``."""

    timeout = 10

    def setUp(self) -> None:
        _keep_sighup(self)

    async def test_serves_on_loopback_and_stops(self) -> None:
        """Port 0 on 127.0.0.1 gets a free port that answers HTTP, and is logged; once
        stopped, nothing answers there."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        node = write_node(self, runners=[_RUNNER])
        service = GatewayService(node.settings, node.parts, reactor)
        service.startService()
        assert service.port is not None
        address = service.port.getHost()
        self.assertEqual(address.host, "127.0.0.1")
        self.assertNotEqual(address.port, 0)
        [listening] = [e for e in events if e.get("event") == "listening"]
        self.assertEqual(listening["url"], f"http://127.0.0.1:{address.port}")
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", address.port)
        client = await connectProtocol(endpoint, _Answer())
        answer = await client.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 404 Not Found\r\n"), answer)
        await service.stopService()
        self.assertIsNone(service.port)
        with self.assertRaises(ConnectionRefusedError):
            await connectProtocol(endpoint, Protocol())

    async def test_address_in_use_is_fatal(self) -> None:
        """A port already taken stops the gateway at start, naming the address."""
        taken = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
        self.addCleanup(taken.stopListening)
        port = taken.getHost().port
        node = write_node(self, runners=[_RUNNER], server={"address": f"127.0.0.1:{port}"})
        service = GatewayService(node.settings, node.parts, reactor)
        error = self.assertRaises(SystemExit, service.privilegedStartService)
        self.assertIn(f"runnergw: cannot listen on 127.0.0.1:{port}: ", str(error))
        self.assertIsNone(service.port)


class StopTests(SynchronousTestCase):
    """Stopping the gateway."""

    def setUp(self) -> None:
        _keep_sighup(self)

    def test_every_terminal_stopped(self) -> None:
        """Each route's terminal, whatever its kind, is told to stop; the stop is over once
        every one of them is, and the SIGHUP handler is the one from before."""
        node = write_node(self, runners=[_RUNNER],
                          descriptors={"text-stats": example("text-stats")})
        service = GatewayService(node.settings, node.parts, MemoryReactorClock())
        before = signal.getsignal(signal.SIGHUP)
        service.startService()
        self.assertNotEqual(signal.getsignal(signal.SIGHUP), before)
        stops: dict[str, Deferred[None]] = {}
        for route in service.router.routes:
            stops[route.name] = Deferred()
            self.patch(route.terminal, "stop", lambda name=route.name: stops[name])
        stopped = service.stopService()
        self.assertEqual(sorted(stops), ["runner0", "text-stats"])
        self.assertEqual(signal.getsignal(signal.SIGHUP), before)
        for waiting in stops.values():
            self.assertNoResult(stopped)
            waiting.callback(None)
        self.successResultOf(stopped)


class JobsDirectoryTests(SynchronousTestCase):
    """One gateway per jobs directory."""

    def setUp(self) -> None:
        _keep_sighup(self)

    def test_second_gateway_refused(self) -> None:
        """A second gateway on the same jobs directory stops at start, naming the setting;
        once the first one stopped, the directory is free again."""
        node = write_node(self, descriptors={"text-stats": example("text-stats")})
        first = GatewayService(node.settings, node.parts, MemoryReactorClock())
        first.privilegedStartService()
        second = GatewayService(node.settings, node.parts, MemoryReactorClock())
        error = self.assertRaises(SystemExit, second.privilegedStartService)
        self.assertIn(f": pipelines.jobsPath: {node.settings.pipelines.jobs_path} is in use "
                      "by another runnergw", str(error))
        first.stopService()
        second.privilegedStartService()
        second.stopService()


class ReloadTests(SynchronousTestCase):
    """SIGHUP: the TLS files and the audit file, reopened."""

    def setUp(self) -> None:
        _keep_sighup(self)
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()
        self.audit = self.directory / "audit.log"

    def service(self, node: Node) -> GatewayService:
        service = GatewayService(node.settings, node.parts, MemoryReactorClock())
        self.addCleanup(service.stopService)
        return service

    def test_audit_file_reopened(self) -> None:
        """After logrotate moved the audit file, a reload starts a new one."""
        node = write_node(self, runners=[_RUNNER], extra={"audit": {"path": str(self.audit)}})
        service = self.service(node)
        node.parts.audit_log.write({"n": 1})
        self.audit.rename(self.directory / "audit.log.1")
        service.reload()
        node.parts.audit_log.write({"n": 2})
        self.assertEqual(self.audit.read_text(), '{"n":2}\n')

    def test_audit_reopen_failure_logged(self) -> None:
        """A file that cannot be reopened is logged; the gateway goes on."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        node = write_node(self, runners=[_RUNNER], extra={"audit": {"path": str(self.audit)}})
        service = self.service(node)
        self.directory.rename(self.directory.with_name("moved"))
        service.reload()
        [event] = [e for e in events if "Cannot reopen the audit trail" in e["log_format"]]
        self.assertEqual(event["path"], str(self.audit))


class BodyDataRateWiringTests(TestCase):
    """The settings reach the gateway's HTTP server."""

    timeout = 10

    def test_server_uses_the_settings(self) -> None:
        """A started gateway enforces the configured rate and grace."""
        gateway = start_gateway(self, [{"host": "127.0.0.1:1", "path": "/a"}], tls=False,
                                server={"minRequestBodyDataRate": 1000,
                                        "minRequestBodyDataRateGrace": "12s"})
        timeouts = gateway.service.factory.timeouts
        self.assertEqual((timeouts.min_body_data_rate, timeouts.min_body_data_rate_grace),
                         (1000, 12.0))
