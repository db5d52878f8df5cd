"""Connection timers: the header deadline, keep-alive idling, body reads and write stalls."""

from __future__ import annotations

from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IPushProducer
from twisted.python.failure import Failure
from zope.interface import implementer

from tests.http.support import ServerTestCase, StubGateway, parse_responses

__all__ = ["BodyReadTimeoutTests", "HeaderDeadlineTests", "KeepAliveTimeoutTests",
           "WriteStallTests"]

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


@implementer(IPushProducer)
class _Producer:
    """Records what the transport asks of a response producer."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")


class BodyReadTimeoutTests(ServerTestCase):
    """A client that stops sending its body."""

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


class WriteStallTests(ServerTestCase):
    """A client that stops reading the response."""

    def start_response(self) -> tuple[_Producer, object]:
        """Start a streaming response whose producer is registered with the client stream."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        producer = _Producer()
        call.client.register_producer(producer)
        call.send_head(200, call.exchange.response_headers, None)
        call.client.write(b"first")
        return producer, (protocol, transport, call)

    def test_write_stall_aborts(self) -> None:
        """A transport paused for ``writeTimeout`` aborts the connection; the terminal is told."""
        producer, (protocol, transport, call) = self.start_response()
        gone: list[bool] = []
        call.client.when_gone(lambda: gone.append(True))
        transport.producer.pauseProducing()
        self.assertEqual(producer.calls, ["pause"])
        self.clock.advance(29.9)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnected, "the connection was not aborted")
        self.assertEqual(call.exchange.outcome, "timeout")
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(gone, [True])

    def test_resume_in_time(self) -> None:
        """A client that starts reading again before ``writeTimeout`` keeps its connection."""
        producer, (protocol, transport, call) = self.start_response()
        transport.producer.pauseProducing()
        self.clock.advance(29.0)
        transport.producer.resumeProducing()
        self.clock.advance(60.0)
        self.assertFalse(transport.disconnecting)
        self.assertEqual(producer.calls, ["pause", "resume"])
        call.client.finish()
        self.assertIsNone(transport.producer)
        self.assertEqual(parse_responses(transport.value())[0].body, b"first")

    def test_stall_timer_restarts_per_pause(self) -> None:
        """Each pause gets its own full ``writeTimeout``."""
        producer, (protocol, transport, call) = self.start_response()
        transport.producer.pauseProducing()
        self.clock.advance(20.0)
        transport.producer.resumeProducing()
        transport.producer.pauseProducing()
        self.clock.advance(20.0)
        self.assertFalse(transport.disconnecting)
        self.clock.advance(10.0)
        self.assertTrue(transport.disconnected)
