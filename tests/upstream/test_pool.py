"""The pool of connections to one runner: reuse, limits, shutdown, and what it logs."""

from __future__ import annotations

from twisted.internet import reactor as real_reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import CancelledError
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone
from twisted.internet.error import ConnectionRefusedError as Refused
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.logs import level_gate
from runnergw.upstream.connection import UpstreamConnection
from runnergw.upstream.pool import REMIND_AFTER, UpstreamPool
from tests.upstream.test_connection import GET, OK, RecordingHandler

__all__ = ["ConnectFailureLogTests", "PoolTests", "QuietConnectionTests"]


class PoolCase(SynchronousTestCase):
    """A pool for runner ``gpu1`` over a memory reactor: connects succeed or fail on demand."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.pool = self.make_pool()
        self.transports: dict[UpstreamConnection, StringTransport] = {}

    def make_pool(self, max_idle: int = 64, idle_timeout: float = 60.0) -> UpstreamPool:
        """A pool for ``gpu1`` with these limits."""
        endpoint = TCP4ClientEndpoint(self.reactor, "127.0.0.1", 11434, timeout=5)
        return UpstreamPool(endpoint, self.reactor, name="gpu1", max_idle=max_idle,
                            idle_timeout=idle_timeout)

    def accept(self) -> None:
        """The runner accepts the latest connection attempt."""
        factory = self.reactor.tcpClients[-1][2]
        wrapper = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 11434))
        transport = StringTransport()
        wrapper.makeConnection(transport)

    def refuse(self) -> None:
        """The runner refuses the latest connection attempt."""
        factory = self.reactor.tcpClients[-1][2]
        factory.clientConnectionFailed(self.reactor.connectors[-1],
                                       Failure(Refused(111, "Connection refused")))

    def connect(self) -> UpstreamConnection:
        """Acquire a connection that must be new, and let the runner accept it."""
        attempts = len(self.reactor.tcpClients)
        acquiring = self.pool.acquire()
        self.assertEqual(len(self.reactor.tcpClients), attempts + 1, "no new connection")
        self.accept()
        connection = self.successResultOf(acquiring)
        assert isinstance(connection.transport, StringTransport)
        self.transports[connection] = connection.transport
        return connection

    def exchange(self, connection: UpstreamConnection, answer: bytes = OK) -> None:
        """One GET answered with ``answer``, then the connection goes back to the pool."""
        handler = RecordingHandler()
        connection.send_request("GET", GET, handler, "none")
        connection.dataReceived(answer)
        self.assertTrue(handler.done)
        self.pool.release(connection)

    def lose(self, connection: UpstreamConnection) -> None:
        """The connection closed (the runner hung up, or our abort took effect)."""
        connection.connectionLost(Failure(ConnectionDone()))


class PoolTests(PoolCase):
    """Connections are reused while healthy and idle, and dropped otherwise."""

    def test_idle_connection_is_reused(self) -> None:
        """A second request to a runner reuses the first request's connection."""
        first = self.connect()
        self.exchange(first)
        again = self.successResultOf(self.pool.acquire())
        self.assertIs(again, first)
        self.assertTrue(again.reused)
        self.assertEqual(len(self.reactor.tcpClients), 1)

    def test_most_recently_used_first(self) -> None:
        """The connection used last is handed out first (the others may expire)."""
        one, two = self.connect(), self.connect()
        self.exchange(one)
        self.exchange(two)
        self.assertIs(self.successResultOf(self.pool.acquire()), two)
        self.assertIs(self.successResultOf(self.pool.acquire()), one)

    def test_max_idle(self) -> None:
        """Beyond ``max_idle`` idle connections, a returned connection is closed politely."""
        self.pool = self.make_pool(max_idle=2)
        connections = [self.connect() for _ in range(3)]
        for connection in connections:
            self.exchange(connection)
        closed = [self.transports[c].disconnecting for c in connections]
        self.assertEqual(closed, [False, False, True])
        self.assertFalse(self.transports[connections[2]].disconnected, "aborted, not closed")

    def test_idle_timeout(self) -> None:
        """An idle connection is closed after ``idle_timeout``; the next request connects anew."""
        self.pool = self.make_pool(idle_timeout=30)
        connection = self.connect()
        self.exchange(connection)
        self.reactor.advance(29)
        self.assertFalse(self.transports[connection].disconnecting)
        self.reactor.advance(1)
        self.assertTrue(self.transports[connection].disconnecting)
        self.lose(connection)
        self.assertIsNot(self.connect(), connection)

    def test_connection_closed_by_the_runner_while_idle_is_not_reused(self) -> None:
        """A runner that hung up on an idle connection gets the next request on a new one."""
        connection = self.connect()
        self.exchange(connection)
        self.lose(connection)
        fresh = self.connect()
        self.assertIsNot(fresh, connection)
        self.assertFalse(fresh.reused)
        self.assertEqual(self.reactor.getDelayedCalls(), [], "idle timer left behind")

    def test_connection_that_cannot_serve_again_is_dropped(self) -> None:
        """After ``Connection: close`` or a cut exchange, the connection is aborted, not kept."""
        closing = self.connect()
        self.exchange(closing, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        self.assertTrue(self.transports[closing].disconnected)
        unfinished = self.connect()
        unfinished.send_request("GET", GET, RecordingHandler(), "none")
        self.pool.release(unfinished)
        self.assertTrue(self.transports[unfinished].disconnected)
        self.lose(closing)
        self.lose(unfinished)
        self.connect()

    def test_close_aborts_and_waits(self) -> None:
        """Shutdown drops busy and idle connections and waits until every one is closed."""
        idle, busy = self.connect(), self.connect()
        self.exchange(idle)
        busy.send_request("GET", GET, RecordingHandler(), "none")
        closing = self.pool.close()
        self.assertTrue(self.transports[idle].disconnected)
        self.assertTrue(self.transports[busy].disconnected)
        self.lose(idle)
        self.assertNoResult(closing)
        self.lose(busy)
        self.successResultOf(closing)

    def test_close_without_connections(self) -> None:
        """Shutting down a pool that holds nothing is immediate."""
        self.successResultOf(self.pool.close())

    def test_connection_returned_after_close_is_not_kept(self) -> None:
        """An exchange that finishes during shutdown closes its connection."""
        connection = self.connect()
        connection.send_request("GET", GET, RecordingHandler(), "none")
        closing = self.pool.close()
        self.lose(connection)
        self.successResultOf(closing)
        late = self.connect()
        self.exchange(late)
        self.assertTrue(self.transports[late].disconnecting)

    def test_cancelled_connect_fails_as_cancelled(self) -> None:
        """A client leaving mid-connect is treated as gone, not as an error inside the gateway."""
        acquiring = self.pool.acquire()
        acquiring.cancel()
        self.failureResultOf(acquiring, CancelledError)


class ConnectFailureLogTests(PoolCase):
    """A runner that is down is logged when it goes down and when it comes back, not per request."""

    def setUp(self) -> None:
        super().setUp()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.seen = 0
        self.patch(level_gate, "level", LogLevel.info)

    def fail_once(self) -> None:
        """One request finds the runner refusing connections."""
        acquiring = self.pool.acquire()
        self.refuse()
        self.failureResultOf(acquiring, Refused)

    def logged(self) -> list[tuple[str, str]]:
        """Every line logged since the last call, with its level."""
        events = list(self.events)[self.seen:]
        self.seen += len(events)
        return [(event["log_level"].name, formatEvent(event)) for event in events]

    def test_outage_is_logged_once_then_recovery(self) -> None:
        """Many failed requests give one warning; the first success says the runner is back."""
        self.reactor.advance(1700000000)
        for _ in range(5):
            self.fail_once()
            self.reactor.advance(10)
        self.assertEqual(self.logged(), [
            ("warn", "runner gpu1 unreachable: Connection was refused by other side: "
                     "111: Connection refused."),
        ])
        self.connect()
        self.assertEqual(self.logged(), [
            ("info", "runner gpu1 reachable again (5 failed connects since "
                     "2023-11-14T22:13:20Z)"),
        ])
        self.connect()
        self.assertEqual(self.logged(), [])

    def test_long_outage_is_recalled(self) -> None:
        """A runner down for long is named again every few minutes, with the count so far."""
        self.fail_once()
        self.reactor.advance(REMIND_AFTER - 1)
        self.fail_once()
        self.assertEqual(len(self.logged()), 1)
        self.reactor.advance(1)
        self.fail_once()
        self.fail_once()
        self.assertEqual(self.logged(), [
            ("warn", "runner gpu1 still unreachable: Connection was refused by other side: "
                     "111: Connection refused. (3 failed connects since 1970-01-01T00:00:00Z)"),
        ])

    def test_second_outage_is_logged_again(self) -> None:
        """After a recovery, the next outage is reported from its first failure."""
        self.fail_once()
        self.connect()
        self.logged()
        self.fail_once()
        self.assertEqual([line for _, line in self.logged()], [
            "runner gpu1 unreachable: Connection was refused by other side: 111: "
            "Connection refused.",
        ])

    def test_client_leaving_while_connecting_is_not_an_outage(self) -> None:
        """A connect cancelled because the client left is not logged as a runner failure."""
        acquiring = self.pool.acquire()
        acquiring.cancel()
        self.failureResultOf(acquiring)
        self.connect()
        self.assertEqual(self.logged(), [])


class QuietConnectionTests(TestCase):
    """Opening connections to a runner writes nothing to the log."""

    timeout = 10

    async def test_no_factory_chatter(self) -> None:
        """No "Starting factory" / "Stopping factory" lines for every upstream connection."""
        server = Factory.forProtocol(Protocol)
        server.noisy = False
        port = real_reactor.listenTCP(0, server, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.patch(level_gate, "level", LogLevel.debug)
        endpoint = TCP4ClientEndpoint(real_reactor, "127.0.0.1", port.getHost().port)
        pool = UpstreamPool(endpoint, real_reactor, name="gpu1")
        connections = [await pool.acquire(), await pool.acquire()]
        self.assertEqual(len({id(c) for c in connections}), 2)
        await pool.close()
        self.assertEqual([formatEvent(event) for event in events], [])
