"""One connection to a runner: the request it writes, the response it reads, reuse and abort."""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock, StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from runnergw.logs import level_gate
from runnergw.upstream.connection import UpstreamConnection
from runnergw.upstream.pool import UpstreamPool
from runnergw.upstream.response import ResponseHead, UpstreamProtocolError

__all__ = ["RecordingHandler", "RequestTests", "ResponseTests", "ReuseTests",
           "InvalidResponseTests"]

GET = b"GET /api/tags HTTP/1.1\r\nHost: runner\r\n\r\n"
OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class RecordingHandler:
    """A ``ResponseHandler`` that records what it is told."""

    def __init__(self) -> None:
        self.head: ResponseHead | None = None
        self.body = b""
        self.done = False
        self.failure: Exception | None = None
        self.calls: list[str] = []

    def response_head(self, head: ResponseHead) -> None:
        self.calls.append("head")
        self.head = head

    def response_data(self, data: bytes) -> None:
        self.calls.append("data")
        self.body += data

    def response_done(self) -> None:
        self.calls.append("done")
        self.done = True

    def response_failed(self, reason: Exception) -> None:
        self.calls.append("failed")
        self.failure = reason


class ConnectionCase(SynchronousTestCase):
    """A connection of a pool named ``gpu1`` over a ``StringTransport``."""

    def setUp(self) -> None:
        reactor = MemoryReactorClock()
        self.pool = UpstreamPool(TCP4ClientEndpoint(reactor, "127.0.0.1", 11434), reactor,
                                 name="gpu1")
        self.connection = UpstreamConnection(self.pool)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        self.handler = RecordingHandler()

    def ask(self, method: str = "GET", head: bytes = GET, body: str = "none") -> None:
        """Send a request head and clear what the transport holds."""
        self.connection.send_request(method, head, self.handler, body)

    def lose(self, reason: Any = ConnectionDone) -> None:
        """The runner closed the connection."""
        self.connection.connectionLost(Failure(reason()))


class RequestTests(ConnectionCase):
    """What the runner receives."""

    def test_head_without_body(self) -> None:
        """The request head reaches the runner as written, and the request is complete."""
        self.ask()
        self.assertEqual(self.transport.value(), GET)
        self.assertTrue(self.connection.request_complete)

    def test_length_body_is_streamed_as_is(self) -> None:
        """A body of known length reaches the runner piece by piece, unframed."""
        self.ask("POST", b"POST /api/generate HTTP/1.1\r\nContent-Length: 6\r\n\r\n", "length")
        self.connection.write_body(b"abc")
        self.assertFalse(self.connection.request_complete)
        self.connection.write_body(b"def")
        self.connection.end_body()
        self.assertTrue(self.connection.request_complete)
        self.assertTrue(self.transport.value().endswith(b"\r\n\r\nabcdef"))

    def test_chunked_body_is_framed(self) -> None:
        """A body of unknown length reaches the runner as chunks, then the last chunk."""
        self.ask("POST", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "chunked")
        self.transport.clear()
        self.connection.write_body(b"hello")
        self.connection.write_body(b", world!")
        self.connection.end_body()
        self.assertEqual(self.transport.value(), b"5\r\nhello\r\n8\r\n, world!\r\n0\r\n\r\n")

    def test_empty_piece_does_not_end_a_chunked_body(self) -> None:
        """An empty body piece is not sent as the last chunk, which would end the body early."""
        self.ask("POST", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "chunked")
        self.transport.clear()
        self.connection.write_body(b"")
        self.connection.write_body(b"a")
        self.connection.end_body()
        self.assertEqual(self.transport.value(), b"1\r\na\r\n0\r\n\r\n")

    def test_nothing_is_written_after_the_body_ended(self) -> None:
        """Body bytes after the end, or a second end, never reach the runner."""
        self.ask("POST", b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "chunked")
        self.connection.end_body()
        self.transport.clear()
        self.connection.write_body(b"late")
        self.connection.end_body()
        self.assertEqual(self.transport.value(), b"")

    def test_nothing_is_written_after_the_connection_was_lost(self) -> None:
        """Writing the body of a request whose connection is gone is a no-op, not an error."""
        self.ask("POST", b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\n", "length")
        self.transport.clear()
        self.lose()
        self.connection.write_body(b"late")
        self.connection.end_body()
        self.assertEqual(self.transport.value(), b"")


class ResponseTests(ConnectionCase):
    """What the handler is told of the runner's answer."""

    def test_response_in_one_piece(self) -> None:
        """Head, body and end arrive in order."""
        self.ask()
        self.connection.dataReceived(OK)
        assert self.handler.head is not None
        self.assertEqual((self.handler.head.status, self.handler.head.content_length), (200, 2))
        self.assertEqual(self.handler.body, b"{}")
        self.assertEqual(self.handler.calls, ["head", "data", "done"])

    def test_chunked_response_split_at_every_byte(self) -> None:
        """However the runner's bytes are cut, the client gets the same head and body."""
        wire = (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
                b"X-A: 1\r\n\r\n4\r\nwiki\r\n5;e=1\r\npedia\r\n0\r\nX-T: 2\r\n\r\n")
        for cut in range(1, len(wire)):
            with self.subTest(cut=cut):
                self.setUp()
                self.ask()
                self.connection.dataReceived(wire[:cut])
                self.connection.dataReceived(wire[cut:])
                self.assertEqual(self.handler.body, b"wikipedia")
                self.assertTrue(self.handler.done)
                assert self.handler.head is not None
                self.assertEqual(list(self.handler.head.headers), [("X-A", "1")])
                self.assertTrue(self.connection.reusable)

    def test_interim_responses_are_skipped(self) -> None:
        """100 Continue and 103 Early Hints are not mistaken for the answer."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 100 Continue\r\n\r\n"
                                     b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + OK)
        assert self.handler.head is not None
        self.assertEqual(self.handler.head.status, 200)
        self.assertEqual(self.handler.body, b"{}")

    def test_close_delimited_response_ends_with_the_connection(self) -> None:
        """A body without length ends, complete, when the runner closes."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\n\r\nsome")
        self.connection.dataReceived(b" text")
        self.assertFalse(self.handler.done)
        self.lose()
        self.assertEqual((self.handler.body, self.handler.done), (b"some text", True))
        self.assertIsNone(self.handler.failure)

    def test_connection_lost_mid_body_is_a_failure(self) -> None:
        """A runner closing before the declared length is reached cuts the response."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        self.lose()
        self.assertIsInstance(self.handler.failure, ConnectionLost)
        self.assertFalse(self.handler.done)

    def test_connection_lost_before_the_head_is_a_failure(self) -> None:
        """A runner closing before answering is reported as such."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200")
        self.lose()
        self.assertIsInstance(self.handler.failure, ConnectionLost)
        self.assertEqual(self.handler.calls, ["failed"])

    def test_head_response_has_no_body(self) -> None:
        """The answer to HEAD ends at its head even though it announces a length."""
        self.ask("HEAD", b"HEAD / HTTP/1.1\r\n\r\n")
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 17\r\n\r\n")
        self.assertEqual(self.handler.calls, ["head", "done"])
        self.assertTrue(self.connection.reusable)

    def test_reading_pauses_and_resumes(self) -> None:
        """A slow client pauses the read from the runner; the next request resumes it."""
        self.ask()
        self.connection.pause_reading()
        self.assertEqual(self.transport.producerState, "paused")
        self.connection.resume_reading()
        self.assertEqual(self.transport.producerState, "producing")
        self.connection.pause_reading()
        self.connection.dataReceived(OK)
        self.ask()
        self.assertEqual(self.transport.producerState, "producing")

    def test_abort_drops_the_connection_and_silences_the_handler(self) -> None:
        """After an abort (client gone) the runner's bytes and close reach nobody."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        self.connection.abort()
        self.assertTrue(self.transport.disconnected)
        self.connection.dataReceived(b"defghij")
        self.lose()
        self.assertEqual(self.handler.calls, ["head", "data"])
        self.assertFalse(self.connection.reusable)


class ReuseTests(ConnectionCase):
    """A connection serves another exchange only when nothing is left over from the last."""

    def test_second_exchange_on_the_same_connection(self) -> None:
        """A complete keep-alive exchange leaves the connection ready for the next request."""
        self.ask()
        self.connection.dataReceived(OK)
        self.assertTrue(self.connection.reusable)
        first, self.handler = self.handler, RecordingHandler()
        self.transport.clear()
        self.ask()
        self.assertEqual(self.transport.value(), GET)
        self.assertFalse(self.connection.reusable)
        self.connection.dataReceived(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
        assert self.handler.head is not None
        self.assertEqual(self.handler.head.status, 404)
        self.assertEqual(first.calls, ["head", "data", "done"])
        self.assertTrue(self.connection.reusable)

    def test_not_reusable(self) -> None:
        """Connection: close, bytes past the body or an unfinished request forbid reuse."""
        cases: list[tuple[bytes, str]] = [
            (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\n{}", "none"),
            (OK + b"HTTP/1.1 200 OK\r\n", "none"),
            (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n{}", "none"),
            (OK, "length"),
        ]
        for answer, body in cases:
            with self.subTest(answer=answer, body=body):
                self.setUp()
                self.ask(body=body)
                self.connection.dataReceived(answer)
                self.assertTrue(self.handler.done)
                self.assertFalse(self.connection.reusable)

    def test_runner_talking_out_of_turn_is_dropped(self) -> None:
        """Bytes from the runner while no request is waiting close the connection."""
        self.ask()
        self.connection.dataReceived(OK)
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\n")
        self.assertTrue(self.transport.disconnected)
        self.assertFalse(self.connection.reusable)


class InvalidResponseTests(ConnectionCase):
    """A malformed answer fails the exchange once, drops the connection and logs one line."""

    def setUp(self) -> None:
        super().setUp()
        self.events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.patch(level_gate, "level", LogLevel.info)

    def assertRefused(self, problem: str) -> None:
        """The handler failed with ``problem``, the connection was dropped, and it was logged."""
        self.assertIsInstance(self.handler.failure, UpstreamProtocolError)
        self.assertEqual(str(self.handler.failure), problem)
        self.assertTrue(self.transport.disconnected)
        self.assertFalse(self.connection.reusable)
        self.assertEqual([(event["log_level"], formatEvent(event)) for event in self.events],
                         [(LogLevel.warn, f"runner gpu1 sent an invalid response: {problem}")])
        self.assertEqual([event["runner"] for event in self.events], ["gpu1"])

    def test_non_ascii_content_length(self) -> None:
        """A Content-Length of "\\xb2" fails the exchange instead of raising a ValueError."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\n")
        self.assertRefused("malformed Content-Length")
        self.assertEqual(self.handler.calls, ["failed"])

    def test_split_header_value_is_never_relayed(self) -> None:
        """A header hiding a line break reaches neither the client nor the log."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nX-Key: s3cr3t\nSet-Cookie: a=b\r\n"
                                     b"Content-Length: 0\r\n\r\n")
        self.assertRefused("control character in the value of header X-Key")
        self.assertNotIn("s3cr3t", repr(self.events))

    def test_bare_lf_head_fails_at_once(self) -> None:
        """A runner ending its lines with bare LFs is refused without waiting for a timeout."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200 OK\nContent-Length: 0\n\n")
        self.assertRefused("bare LF in the response head")

    def test_oversized_head(self) -> None:
        """A head that never ends is refused once it passes 64 KiB."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\n")
        for _ in range(70):
            self.connection.dataReceived(b"X-Filler: " + b"x" * 1000 + b"\r\n")
        self.assertRefused("response head too large")

    def test_unrequested_protocol_switch(self) -> None:
        """A 101 nobody asked for is refused rather than skipped as an interim answer."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n"
                                     + OK)
        self.assertRefused("unrequested 101 Switching Protocols")

    def test_malformed_chunk_mid_body(self) -> None:
        """A garbled chunk after the head cuts the response and is logged."""
        self.ask()
        self.connection.dataReceived(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                                     b"2\r\nok\r\n")
        self.connection.dataReceived(b"zz\r\n")
        self.assertRefused("malformed chunked body: malformed chunk size")
        self.assertEqual(self.handler.calls, ["head", "data", "failed"])
