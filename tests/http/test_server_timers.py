"""Connection timers: header deadline, keep-alive idling, body reads and rate, write stalls."""

from __future__ import annotations

import attrs
from twisted.internet.testing import StringTransport

from runnergw.chain.route import Route, Router, error_body_detail
from runnergw.chain.runner import ChainRunner
from runnergw.http.server import GatewayHTTPProtocol
from runnergw.http.timers import ConnectionTimeouts
from tests.http.support import ServerTestCase, StubGateway, StubTerminal, parse_responses

__all__ = ["BodyDataRateTests", "BodyReadTimeoutTests", "HeaderDeadlineTests",
           "KeepAliveTimeoutTests"]

_GET = b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n"


class HeaderDeadlineTests(ServerTestCase):
    """The whole head must be in within ``server.headerTimeout`` of its first byte."""

    def test_slowloris(self) -> None:
        """A head sent a byte at a time, never idle for long, still gets 408 at the deadline."""
        protocol, transport = self.connect()
        data = b"GET / HTTP/1.1\r\nHost: gw\r\nX-Slow: " + b"a" * 100
        for byte in data[:19]:
            self.clock.advance(0.5)
            protocol.dataReceived(bytes([byte]))
        self.assertEqual(transport.value(), b"")
        self.assertOpen(transport)
        self.clock.advance(0.5)
        self.assertRefused(transport, 408)
        self.assertEqual(self.gateway.calls, [])

    def test_slowloris_after_partial_head(self) -> None:
        """Bytes arriving after the deadline do not earn more time."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(9.9)
        protocol.dataReceived(b"Host: gw\r\n")
        self.clock.advance(0.1)
        self.assertRefused(transport, 408)
        protocol.dataReceived(b"\r\n")
        self.assertEqual(self.gateway.calls, [])

    def test_silent_connection(self) -> None:
        """A connection that sends nothing is closed at the header deadline, without a reply."""
        _, transport = self.connect()
        self.clock.advance(9.99)
        self.assertOpen(transport)
        self.clock.advance(0.01)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_empty_lines_do_not_help(self) -> None:
        """A connection that sends only empty lines is closed at the header deadline."""
        protocol, transport = self.connect()
        for _ in range(9):
            self.clock.advance(1.0)
            protocol.dataReceived(b"\r\n")
        self.assertOpen(transport)
        self.clock.advance(1.0)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(transport.value(), b"")

    def test_head_in_time(self) -> None:
        """A head completed just before the deadline is served and no timer fires later."""
        self.gateway = StubGateway(echo=True)
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(9.9)
        protocol.dataReceived(b"Host: gw\r\n\r\n")
        self.assertStatusLine(transport, 200)
        self.clock.advance(1.0)
        self.assertOpen(transport)

    def test_no_deadline_while_the_gateway_works(self) -> None:
        """Once the head is in, a slow gateway (a slow token check) is not cut off."""
        protocol, transport = self.request(_GET)
        self.clock.advance(600.0)
        self.assertOpen(transport)
        self.gateway.calls[0].respond(200, b"late")
        self.assertStatusLine(transport, 200)


class KeepAliveTimeoutTests(ServerTestCase):
    """An idle kept-alive connection."""

    def setUp(self) -> None:
        """Answer every request at once."""
        super().setUp()
        self.gateway = StubGateway(echo=True)

    def test_idle_connection_closed(self) -> None:
        """After a response, an idle connection closes after ``keepAliveTimeout``."""
        protocol, transport = self.request(_GET)
        self.assertStatusLine(transport, 200)
        self.clock.advance(74.9)
        self.assertOpen(transport)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(parse_responses(transport.value())), 1)

    def test_new_request_restarts_header_deadline(self) -> None:
        """A new request on an idle connection gets a full header deadline from its first byte."""
        protocol, transport = self.request(_GET)
        self.clock.advance(70.0)
        protocol.dataReceived(b"G")
        self.clock.advance(9.9)
        self.assertOpen(transport)
        protocol.dataReceived(b"ET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(len(parse_responses(transport.value())), 2)
        self.assertOpen(transport)

    def test_new_request_header_deadline_enforced(self) -> None:
        """That second head is still bound by the header deadline."""
        protocol, transport = self.request(_GET)
        self.clock.advance(70.0)
        transport.clear()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        self.clock.advance(9.9)
        self.assertOpen(transport)
        self.clock.advance(0.1)
        self.assertRefused(transport, 408)

    def test_empty_lines_do_not_keep_alive(self) -> None:
        """Empty lines between requests do not reset the keep-alive timer."""
        protocol, transport = self.request(_GET)
        for _ in range(7):
            self.clock.advance(10.0)
            protocol.dataReceived(b"\r\n")
        self.assertOpen(transport)
        self.clock.advance(5.0)
        self.assertTrue(transport.disconnecting)


class BodyDataRateTests(ServerTestCase):
    """A client that keeps sending its body, but too slowly (240 bytes/s after a 5 s grace)."""

    _HEAD = b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nContent-Length: %d\r\n\r\n"

    def trickle(self, protocol: GatewayHTTPProtocol, transport: StringTransport,
                seconds: float, piece: bytes) -> None:
        """Send ``piece`` every half second for ``seconds``, unless the connection closes."""
        for _ in range(int(seconds * 2)):
            self.clock.advance(0.5)
            if transport.disconnecting:
                return
            protocol.dataReceived(piece)

    def test_slow_body_cut_after_grace(self) -> None:
        """A 1 MiB body sent a byte every half second gets 408, in the route's shape, at 5 s."""
        terminal = StubTerminal(echo=True)
        route = Route("api", ("api",), (), terminal, error_body=error_body_detail)
        self.gateway = ChainRunner(Router([route], Route("", (), (), None)))
        protocol, transport = self.request(self._HEAD % (1 << 20))
        self.trickle(protocol, transport, 4.5, b"x")
        self.assertOpen(transport)
        self.trickle(protocol, transport, 0.5, b"x")
        self.assertStatusLine(transport, 408)
        [response] = parse_responses(transport.value())
        self.assertEqual(list(response.json()), ["detail"])
        self.assertEqual(response.headers.get("connection"), "close")
        self.assertTrue(transport.disconnecting)
        call = terminal.calls[0]
        assert call.consumer is not None
        self.assertIsNotNone(call.consumer.failure)
        self.assertEqual((call.exchange.status, call.exchange.outcome), (408, "timeout"))

    def test_fast_enough_body(self) -> None:
        """A body at 480 bytes per second is served, however long it takes."""
        self.gateway = StubGateway(echo=True)
        protocol, transport = self.request(self._HEAD % (240 * 60))
        self.trickle(protocol, transport, 30, b"x" * 240)
        self.assertStatusLine(transport, 200)
        self.assertOpen(transport)

    def test_wait_before_the_body_is_asked_for(self) -> None:
        """A minute spent on the token check before the body is read is not the client's."""
        protocol, transport = self.request(self._HEAD % 4800 + b"x" * 480)
        self.clock.advance(60.0)
        consumer = self.gateway.calls[0].read_body()
        self.trickle(protocol, transport, 9, b"x" * 240)
        self.assertOpen(transport)
        self.assertTrue(consumer.done)

    def test_runner_backpressure_not_counted(self) -> None:
        """Time while the runner holds the body back is not counted; once it resumes, it is."""
        protocol, transport = self.request(self._HEAD % (1 << 20))
        call = self.gateway.calls[0]
        consumer = call.read_body()
        self.trickle(protocol, transport, 3, b"x" * 240)
        call.client.pause_body()
        self.clock.advance(25.0)
        call.client.resume_body()
        self.trickle(protocol, transport, 2, b"x" * 240)
        self.assertOpen(transport)
        # 2400 bytes in 5 s of reading: they last until 10 s of reading time, 5 s from now.
        self.clock.advance(4.75)
        self.assertOpen(transport)
        self.clock.advance(0.25)
        self.assertRefused(transport, 408)
        self.assertIsNotNone(consumer.failure)

    def test_configured_rate_and_grace(self) -> None:
        """``minRequestBodyDataRate`` and its grace come from the settings."""
        timeouts = attrs.evolve(self.timeouts, min_body_data_rate=1000.0,
                                min_body_data_rate_grace=10.0)
        protocol, transport = self.request(self._HEAD % (1 << 20), timeouts=timeouts)
        self.gateway.calls[0].read_body()
        self.trickle(protocol, transport, 9.5, b"x" * 240)
        self.assertOpen(transport)
        self.trickle(protocol, transport, 0.5, b"x" * 240)
        self.assertRefused(transport, 408)

    def test_disabled(self) -> None:
        """With ``minRequestBodyDataRate: 0`` only the idle read timeout applies."""
        self.gateway = StubGateway(echo=True)
        timeouts = attrs.evolve(self.timeouts, min_body_data_rate=0.0)
        protocol, transport = self.request(self._HEAD % 40, timeouts=timeouts)
        self.trickle(protocol, transport, 20, b"x")
        self.assertStatusLine(transport, 200)


class BodyReadTimeoutTests(ServerTestCase):
    """A client that stops sending its body (the minimum data rate, off here, is tested below)."""

    timeouts = ConnectionTimeouts(header=10.0, read=30.0, write=30.0, keep_alive=75.0,
                                  min_body_data_rate=0)

    _POST = b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\n"

    def test_stalled_body(self) -> None:
        """A body stalled for ``readTimeout`` gets 408 and the terminal sees the failure."""
        protocol, transport = self.request(self._POST + b"12345")
        call = self.gateway.calls[0]
        consumer = call.read_body()
        self.assertEqual(consumer.data, b"12345")
        self.clock.advance(29.9)
        self.assertOpen(transport)
        self.clock.advance(0.1)
        self.assertRefused(transport, 408)
        self.assertIsInstance(consumer.failure, Exception)
        self.assertFalse(consumer.done)
        self.assertEqual(call.exchange.outcome, "timeout")
        self.assertEqual(call.exchange.status, 408)

    def test_stalled_before_first_body_byte(self) -> None:
        """A body that never starts gets 408 after ``readTimeout`` from the request for it."""
        protocol, transport = self.request(self._POST)
        self.clock.advance(50.0)
        consumer = self.gateway.calls[0].read_body()
        self.clock.advance(29.9)
        self.assertOpen(transport)
        self.clock.advance(0.1)
        self.assertRefused(transport, 408)
        self.assertIsNotNone(consumer.failure)

    def test_each_piece_rearms(self) -> None:
        """The read timer measures silence: each piece of body re-arms it."""
        protocol, transport = self.request(self._POST)
        consumer = self.gateway.calls[0].read_body()
        for piece in (b"12", b"34", b"56", b"78"):
            self.clock.advance(25.0)
            protocol.dataReceived(piece)
        self.clock.advance(25.0)
        protocol.dataReceived(b"90")
        self.assertTrue(consumer.done)
        self.clock.advance(100.0)
        self.assertOpen(transport)

    def test_paused_body_never_times_out(self) -> None:
        """While the runner pushes back, the client is not blamed; resuming restarts the timer."""
        protocol, transport = self.request(self._POST + b"123")
        call = self.gateway.calls[0]
        consumer = call.read_body()
        call.client.pause_body()
        self.clock.advance(300.0)
        self.assertOpen(transport)
        call.client.resume_body()
        self.clock.advance(29.9)
        self.assertOpen(transport)
        self.clock.advance(0.1)
        self.assertRefused(transport, 408)
        self.assertIsNotNone(consumer.failure)

    def test_stall_after_head_sent_aborts(self) -> None:
        """A body stalling after the response started cannot be answered: the connection drops."""
        protocol, transport = self.request(self._POST + b"123")
        call = self.gateway.calls[0]
        consumer = call.read_body()
        call.send_head(200, call.exchange.response_headers, None)
        self.clock.advance(30.0)
        self.assertTrue(transport.disconnected)
        self.assertIsNotNone(consumer.failure)
        self.assertEqual(call.exchange.outcome, "timeout")
