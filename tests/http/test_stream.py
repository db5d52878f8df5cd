"""One exchange's view of its client connection: what it records, the route policy it
applies to a chunked body, ``100 Continue`` when the client waits for it, response framing
and ``Connection: close``, and response producers (backpressure, write stalls)."""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionLost
from twisted.python.failure import Failure

from runnergw.chain.route import error_body_detail
from runnergw.http.headers import Headers
from runnergw.http.interfaces import StreamPolicy, StreamRecord
from runnergw.http.stream import ClientStream
from tests.helpers.producers import RecordingProducer
from tests.http.support import NOW, ServerTestCase, StubGateway, parse_responses

__all__ = ["ConnectionCloseTests", "ContinueTests", "PolicyTests", "ProducerTests",
           "RecordTests", "ResponseFramingTests", "WriteStallTests"]

_GET = b"GET /api/tags HTTP/1.1\r\nHost: gw\r\n\r\n"
_CHUNKED_POST = b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"


class _PlainHandler:
    """A request handler that keeps the streams it is given, and the server's own record."""

    def __init__(self) -> None:
        self.streams: list[ClientStream] = []

    def handle(self, stream: ClientStream) -> Deferred[None]:
        self.streams.append(stream)
        return Deferred()


class RecordTests(ServerTestCase):
    """What the audit later reads: kept up to date by the stream as the exchange goes."""

    def test_fixed_length_exchange(self) -> None:
        """Body bytes in, status and time of the head, body bytes out, time of the end."""
        protocol, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello")
        call = self.gateway.calls[0]
        record = call.client.record
        self.assertIs(record, call.exchange)
        call.read_body()
        self.assertEqual(record.bytes_in, 5)
        self.clock.advance(2.0)
        call.send_head(201, Headers(), 3)
        self.assertEqual((record.status, record.first_byte_at), (201, NOW + 2.0))
        self.assertIsNone(record.finished_at)
        self.clock.advance(1.0)
        call.client.write(b"abc")
        call.client.finish()
        self.assertEqual((record.bytes_out, record.finished_at), (3, NOW + 3.0))

    def test_body_asked_after_the_client_left_fails(self) -> None:
        """Asking for the body of a client that already left tells the consumer at once,
        so nothing waits for a body that will never come."""
        protocol, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhel")
        call = self.gateway.calls[0]
        protocol.connectionLost(Failure(ConnectionLost()))
        consumer = call.read_body()
        self.assertIsInstance(consumer.failure, ConnectionError)
        self.assertEqual(consumer.pieces, [])

    def test_chunked_bytes_are_body_bytes(self) -> None:
        """A chunked body in or out counts its data, not the chunk framing."""
        protocol, transport = self.request(_CHUNKED_POST + b"5\r\nhello\r\n3\r\nabc\r\n0\r\n\r\n")
        call = self.gateway.calls[0]
        consumer = call.read_body()
        call.send_head(200, Headers(), None)
        call.client.write(b"abc")
        call.client.write(b"de")
        call.client.finish()
        self.assertEqual(consumer.data, b"helloabc")
        self.assertEqual((call.exchange.bytes_in, call.exchange.bytes_out), (8, 5))
        self.assertEqual(parse_responses(transport.value())[0].body, b"abcde")

    def test_server_record_without_a_handler_record(self) -> None:
        """A handler that keeps the server's own record still gets it kept up to date."""
        handler = _PlainHandler()
        protocol, transport = self.request(_GET, gateway=handler)
        [stream] = handler.streams
        self.assertIsInstance(stream.record, StreamRecord)
        self.assertEqual(stream.record.request_id, stream.request_id)
        stream.send_head(200, Headers(), 2)
        stream.write(b"ok")
        stream.finish()
        self.assertEqual((stream.record.status, stream.record.bytes_out,
                          stream.record.finished_at), (200, 2, NOW))

    def test_client_leaving_is_recorded(self) -> None:
        """A client that leaves before the end is recorded as gone, with the time."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        call.send_head(200, Headers(), None)
        self.clock.advance(4.0)
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual((call.exchange.outcome, call.exchange.finished_at),
                         ("client_gone", NOW + 4.0))
        self.assertEqual(call.exchange.reason,
                         "client disconnected before the response was complete")


class PolicyTests(ServerTestCase):
    """The route's ``StreamPolicy``, set by the handler once it knows the route."""

    def test_chunked_body_over_the_limit(self) -> None:
        """A chunked body growing past the route's limit is refused with 413 in the route's
        error shape, naming the limit; the consumer sees only what was within it."""
        protocol, transport = self.request(_CHUNKED_POST)
        call = self.gateway.calls[0]
        call.client.policy = StreamPolicy(max_body_size=5, error_body=error_body_detail)
        consumer = call.read_body()
        protocol.dataReceived(b"3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n")
        self.assertEqual(consumer.data, b"abc")
        self.assertIsNotNone(consumer.failure)
        response = self.assertRefusedShape(transport, 413)
        self.assertEqual(response, {"detail": "request body larger than 5 bytes"})
        self.assertEqual(call.exchange.outcome, "client_error")

    def test_chunked_body_at_the_limit(self) -> None:
        """A chunked body of exactly the limit is read whole."""
        protocol, transport = self.request(_CHUNKED_POST + b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        call = self.gateway.calls[0]
        call.client.policy = StreamPolicy(max_body_size=5)
        consumer = call.read_body()
        self.assertTrue(consumer.done)
        self.assertEqual(consumer.data, b"abcde")

    def test_declared_length_is_not_the_streams_to_refuse(self) -> None:
        """A declared length is checked by the handler before it asks for the body (it can
        answer before reading a byte); the stream reads what was declared."""
        protocol, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 8\r\n\r\n12345678")
        call = self.gateway.calls[0]
        call.client.policy = StreamPolicy(max_body_size=5)
        consumer = call.read_body()
        self.assertEqual((consumer.data, consumer.done), (b"12345678", True))

    def assertRefusedShape(self, transport: object, status: int) -> object:
        """One response with ``status`` and ``Connection: close``; its JSON body."""
        [response] = parse_responses(transport.value())  # type: ignore[attr-defined]
        self.assertEqual(response.status, status)
        self.assertEqual(response.headers.get("connection"), "close")
        self.assertTrue(transport.disconnecting)  # type: ignore[attr-defined]
        return json.loads(response.body)


class ContinueTests(ServerTestCase):
    """``Expect: 100-continue``: the client waits before sending its body."""

    _EXPECT = (b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
               b"Expect: 100-continue\r\n\r\n")

    def test_sent_when_the_body_is_asked_for(self) -> None:
        """``100 Continue`` goes out when the handler asks for the body, not before."""
        protocol, transport = self.request(self._EXPECT)
        call = self.gateway.calls[0]
        self.assertEqual(transport.value(), b"")
        call.read_body()
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")
        protocol.dataReceived(b"hello")
        self.assertEqual(call.consumer.data, b"hello")  # type: ignore[union-attr]

    def test_not_sent_once_answered(self) -> None:
        """A handler that answered first (a refusal) never invites the body."""
        protocol, transport = self.request(self._EXPECT)
        call = self.gateway.calls[0]
        call.send_head(403, Headers(), 0)
        call.read_body()
        self.assertNotIn(b"100 Continue", transport.value())

    def test_not_sent_unless_asked(self) -> None:
        """Without ``Expect`` the body is read without an interim answer."""
        protocol, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n\r\nhello")
        self.gateway.calls[0].read_body()
        self.assertEqual(transport.value(), b"")

    def test_asked_twice_sent_once(self) -> None:
        """Asking for the body again changes nothing."""
        protocol, transport = self.request(self._EXPECT)
        call = self.gateway.calls[0]
        call.read_body()
        call.client.start_body(call.consumer)
        self.assertEqual(transport.value(), b"HTTP/1.1 100 Continue\r\n\r\n")


class ConnectionCloseTests(ServerTestCase):
    """When a response ends its connection."""

    def test_error_while_the_body_is_coming(self) -> None:
        """An error answered while the body still arrives (an upload over its limit)
        closes the connection rather than reading the rest."""
        protocol, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 100\r\n\r\n12345")
        call = self.gateway.calls[0]
        call.read_body()
        call.respond(413, b'{"error": "too large"}')
        [response] = parse_responses(transport.value())
        self.assertEqual(response.headers.get("connection"), "close")
        self.assertFalse(call.client.keep_alive)

    def test_success_while_the_body_is_coming(self) -> None:
        """A success answered before the whole body is in keeps the connection: the rest of
        the body is still read."""
        protocol, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\n12345")
        call = self.gateway.calls[0]
        consumer = call.read_body()
        call.send_head(200, Headers(), None)
        self.assertNotIn(b"Connection", transport.value())
        protocol.dataReceived(b"67890")
        self.assertEqual((consumer.data, consumer.done), (b"1234567890", True))
        call.client.finish()
        self.assertOpen(transport)

    def test_client_asking_to_close(self) -> None:
        """``Connection: close`` from the client is answered with it, and honoured."""
        protocol, transport = self.request(
            b"GET / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")
        self.gateway.calls[0].respond(200, b"ok")
        [response] = parse_responses(transport.value())
        self.assertEqual(response.headers.get("connection"), "close")
        self.assertTrue(transport.disconnecting)

    def test_http10_close_delimited(self) -> None:
        """An HTTP/1.0 response of unknown length is ended by closing, never chunked."""
        protocol, transport = self.request(
            b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        call = self.gateway.calls[0]
        call.respond(200, b"streamed", length=None)
        self.assertIn(b"Connection: close\r\n", transport.value())
        self.assertNotIn(b"Transfer-Encoding", transport.value())
        self.assertTrue(transport.value().endswith(b"\r\n\r\nstreamed"))
        self.assertTrue(transport.disconnecting)

    def test_request_id_on_every_response(self) -> None:
        """The head names the request, whatever the handler put there."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        call.respond(200, b"ok", headers=(("X-Request-Id", "forged"),))
        [response] = parse_responses(transport.value())
        self.assertEqual(response.headers.get_all("x-request-id"), [call.client.request_id])


class ProducerTests(ServerTestCase):
    """A response producer, paused while the client does not take bytes."""

    def test_registered_with_the_transport(self) -> None:
        """The transport pauses and resumes the producer; finishing unregisters it."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        producer = RecordingProducer()
        call.client.register_producer(producer)
        call.send_head(200, Headers(), None)
        self.assertTrue(transport.streaming)
        transport.producer.pauseProducing()
        transport.producer.resumeProducing()
        self.assertEqual(producer.calls, ["pause", "resume"])
        call.client.finish()
        self.assertIsNone(transport.producer)

    def test_replacing_a_producer(self) -> None:
        """A second producer replaces the first one (a retried runner connection)."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        first, second = RecordingProducer(), RecordingProducer()
        call.client.register_producer(first)
        call.client.register_producer(second)
        transport.producer.pauseProducing()
        self.assertEqual((first.calls, second.calls), ([], ["pause"]))

    def test_registered_after_the_client_left(self) -> None:
        """A producer registered once the client is gone is stopped at once."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        protocol.connectionLost(Failure(ConnectionLost()))
        producer = RecordingProducer()
        call.client.register_producer(producer)
        self.assertEqual(producer.calls, ["stop"])
        self.assertIsNone(transport.producer)

    def test_abort_unregisters(self) -> None:
        """Aborting the response lets go of the producer and drops the connection."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        call.client.register_producer(RecordingProducer())
        call.send_head(200, Headers(), None)
        self.clock.advance(1.0)
        call.client.abort("the runner failed")
        self.assertIsNone(transport.producer)
        self.assertTrue(transport.disconnected)
        self.assertEqual(call.exchange.finished_at, NOW + 1.0)


class ResponseFramingTests(ServerTestCase):
    """How response bodies are delimited."""

    def serve(self, request: bytes, status: int, body: bytes, length: int | None | str = "auto",
              headers: tuple[tuple[str, str], ...] = ()) -> bytes:
        """Send ``request`` and a pipelined GET; answer the first as told, the second ``ok``."""
        protocol, transport = self.request(request + _GET)
        self.gateway.calls[0].respond(status, body, headers, length)
        self.gateway.calls[1].respond(200, b"next")
        return transport.value()

    def test_head_has_no_body(self) -> None:
        """A response to HEAD has its length but no body; the next response follows at once."""
        data = self.serve(b"HEAD / HTTP/1.1\r\nHost: gw\r\n\r\n", 200, b"hello")
        head, following = parse_responses(data, ["HEAD", "GET"])
        self.assertEqual(head.headers.get("content-length"), "5")
        self.assertNotIn(b"hello", data)
        self.assertEqual(following.body, b"next")

    def test_head_unknown_length(self) -> None:
        """A HEAD response of unknown length is neither chunked nor closing."""
        data = self.serve(b"HEAD / HTTP/1.1\r\nHost: gw\r\n\r\n", 200, b"hello", None)
        head, following = parse_responses(data, ["HEAD", "GET"])
        self.assertIsNone(head.headers.get("transfer-encoding"))
        self.assertIsNone(head.headers.get("connection"))
        self.assertEqual(following.body, b"next")

    def test_no_content(self) -> None:
        """204 carries neither a body nor a length, even when one is given."""
        for length in ("auto", None):
            with self.subTest(length=length):
                self.gateway = StubGateway()
                data = self.serve(_GET, 204, b"oops", length)
                first, following = parse_responses(data)
                self.assertEqual(first.status, 204)
                self.assertIsNone(first.headers.get("content-length"))
                self.assertIsNone(first.headers.get("transfer-encoding"))
                self.assertNotIn(b"oops", data)
                self.assertEqual(following.body, b"next")

    def test_not_modified(self) -> None:
        """304 carries neither a body nor a length."""
        data = self.serve(_GET, 304, b"oops")
        first, following = parse_responses(data)
        self.assertEqual(first.status, 304)
        self.assertIsNone(first.headers.get("content-length"))
        self.assertNotIn(b"oops", data)
        self.assertEqual(following.body, b"next")

    def test_unknown_length_is_chunked(self) -> None:
        """An HTTP/1.1 response of unknown length is chunked."""
        data = self.serve(_GET, 200, b"streamed", None)
        first, following = parse_responses(data)
        self.assertEqual(first.headers.get("transfer-encoding"), "chunked")
        self.assertEqual((first.body, following.body), (b"streamed", b"next"))

    def test_framing_fields_from_upstream_replaced(self) -> None:
        """Framing and connection fields a runner sends are replaced by the gateway's own."""
        data = self.serve(_GET, 200, b"abc", 3, (("Content-Length", "99"),
                                                 ("Transfer-Encoding", "chunked"),
                                                 ("Connection", "close"),
                                                 ("Keep-Alive", "timeout=1")))
        first, following = parse_responses(data)
        self.assertEqual(first.headers.get_all("content-length"), ["3"])
        self.assertEqual(first.headers.get_all("transfer-encoding"), [])
        self.assertEqual(first.headers.get_all("connection"), [])
        self.assertEqual(first.headers.get_all("keep-alive"), [])
        self.assertEqual(following.body, b"next")

    def test_date(self) -> None:
        """Every response has a Date."""
        data = self.serve(_GET, 200, b"x")
        for response in parse_responses(data):
            self.assertEqual(response.headers.get("date"), "Tue, 14 Nov 2023 22:13:20 GMT")


class WriteStallTests(ServerTestCase):
    """A client that stops reading the response."""

    def start_response(self) -> tuple[RecordingProducer, object]:
        """Start a streaming response whose producer is registered with the client stream."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        producer = RecordingProducer()
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
