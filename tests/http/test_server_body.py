"""Request bodies: size limits, ``100 Continue`` after the token check, backpressure."""

from __future__ import annotations

import json
import random

from runnergw.chain.route import error_body_detail
from tests.http.support import (
    RecordingConsumer,
    ServerTestCase,
    StubGateway,
    StubTerminal,
    build_gateway,
    mint,
    parse_responses,
)

__all__ = ["BackpressureTests", "BodyLimitTests", "ContinueTests", "SplitRequestTests"]

_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


def _post(body_framing: bytes, token: str | None = None, *extra: bytes) -> bytes:
    """A POST head with the given framing field(s) and optional bearer token."""
    lines = [b"POST /api/chat HTTP/1.1", b"Host: gw", body_framing, *extra]
    if token is not None:
        lines.append(b"Authorization: Bearer " + token.encode("ascii"))
    return b"\r\n".join(lines) + b"\r\n\r\n"


class BodyLimitTests(ServerTestCase):
    """The route's ``maxBodySize``."""

    def setUp(self) -> None:
        """A real gateway with a token filter and a 100-byte body limit."""
        super().setUp()
        self.terminal = StubTerminal()
        self.gateway = build_gateway(self.terminal, max_body_size=100)

    def test_content_length_over_limit(self) -> None:
        """A declared body over the limit is 413 at once: no body byte read, no runner called."""
        protocol, transport = self.request(_post(b"Content-Length: 101", mint()))
        self.assertRefused(transport, 413)
        self.assertEqual(self.terminal.calls, [])
        self.assertEqual(transport.producerState, "paused")
        protocol.dataReceived(b"x" * 101)
        self.assertEqual(len(parse_responses(transport.value())), 1)

    def test_content_length_over_limit_without_token(self) -> None:
        """Without a token the answer is 401, so strangers do not learn the size limit."""
        _, transport = self.request(_post(b"Content-Length: 5000"))
        self.assertRefused(transport, 401)
        self.assertEqual(self.terminal.calls, [])

    def test_content_length_over_limit_with_continue(self) -> None:
        """A body over the limit announced with ``Expect: 100-continue`` never gets a 100."""
        _, transport = self.request(_post(b"Content-Length: 101", mint(),
                                          b"Expect: 100-continue"))
        self.assertRefused(transport, 413)
        self.assertNotIn(b"100 Continue", transport.value())

    def test_content_length_at_limit(self) -> None:
        """A body of exactly the limit reaches the runner."""
        self.terminal.echo = True
        _, transport = self.request(_post(b"Content-Length: 100", mint()) + b"x" * 100)
        [response] = parse_responses(transport.value())
        self.assertEqual((response.status, response.body), (200, b"POST /api/chat:" + b"x" * 100))
        self.assertOpen(transport)

    def test_chunked_body_over_limit(self) -> None:
        """A chunked body growing past the limit is 413; the runner gets no byte beyond it."""
        protocol, transport = self.request(_post(b"Transfer-Encoding: chunked", mint()))
        [call] = self.terminal.calls
        consumer = call.read_body()
        protocol.dataReceived(b"32\r\n" + b"a" * 50 + b"\r\n")
        protocol.dataReceived(b"32\r\n" + b"b" * 50 + b"\r\n")
        self.assertOpen(transport)
        protocol.dataReceived(b"1\r\nc\r\n")
        self.assertRefused(transport, 413)
        self.assertEqual(consumer.data, b"a" * 50 + b"b" * 50)
        self.assertIsInstance(consumer.failure, Exception)
        self.assertEqual(call.exchange.status, 413)
        self.assertEqual(call.exchange.outcome, "client_error")

    def test_chunked_body_over_limit_in_the_route_shape(self) -> None:
        """The 413 for a chunked body uses the route's error shape (pipelines: ``detail``)."""
        self.gateway = build_gateway(self.terminal, max_body_size=100,
                                     error_body=error_body_detail)
        protocol, transport = self.request(_post(b"Transfer-Encoding: chunked", mint()))
        self.terminal.calls[0].read_body()
        protocol.dataReceived(b"65\r\n" + b"a" * 101 + b"\r\n")
        [response] = parse_responses(transport.value())
        self.assertEqual(response.status, 413)
        self.assertEqual(json.loads(response.body),
                         {"detail": "request body larger than 100 bytes"})

    def test_chunked_body_over_limit_in_one_chunk(self) -> None:
        """One huge chunk is refused before its data is passed on."""
        protocol, transport = self.request(_post(b"Transfer-Encoding: chunked", mint())
                                           + b"fffff\r\n" + b"a" * 4096)
        consumer = self.terminal.calls[0].read_body()
        self.assertRefused(transport, 413)
        self.assertLessEqual(len(consumer.data), 100)
        self.assertIsNotNone(consumer.failure)

    def test_chunked_body_over_limit_after_head(self) -> None:
        """Past the limit after the response started, the connection is dropped."""
        protocol, transport = self.request(_post(b"Transfer-Encoding: chunked", mint()))
        call = self.terminal.calls[0]
        consumer = call.read_body()
        call.send_head(200, call.exchange.response_headers, None)
        protocol.dataReceived(b"65\r\n" + b"a" * 101 + b"\r\n0\r\n\r\n")
        self.assertTrue(transport.disconnected)
        self.assertIsNotNone(consumer.failure)

    def test_chunked_body_within_limit(self) -> None:
        """A chunked body up to the limit reaches the runner whole."""
        self.terminal.echo = True
        _, transport = self.request(_post(b"Transfer-Encoding: chunked", mint())
                                    + b"32\r\n" + b"a" * 50 + b"\r\n32\r\n" + b"b" * 50
                                    + b"\r\n0\r\n\r\n")
        [response] = parse_responses(transport.value())
        self.assertEqual(response.body, b"POST /api/chat:" + b"a" * 50 + b"b" * 50)


class ContinueTests(ServerTestCase):
    """``Expect: 100-continue`` is answered only after the token was accepted."""

    def setUp(self) -> None:
        """A real gateway with a token filter."""
        super().setUp()
        self.terminal = StubTerminal()
        self.gateway = build_gateway(self.terminal)

    def test_missing_token(self) -> None:
        """No token: 401 with a challenge, never a ``100 Continue``, and the connection closes."""
        protocol, transport = self.request(_post(b"Content-Length: 5", None,
                                                 b"Expect: 100-continue"))
        response = self.assertRefused(transport, 401)
        self.assertEqual(response.headers.get("www-authenticate"), 'Bearer realm="runnergw"')
        self.assertEqual(self.terminal.calls, [])
        protocol.dataReceived(b"hello")
        self.clock.advance(100.0)
        self.assertNotIn(b"100 Continue", transport.value())

    def test_bad_token(self) -> None:
        """A forged token: 401, never a ``100 Continue``."""
        token = mint()
        forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
        _, transport = self.request(_post(b"Content-Length: 5", forged, b"Expect: 100-continue"))
        self.assertRefused(transport, 401)
        self.assertNotIn(b"100 Continue", transport.value())

    def test_expired_token(self) -> None:
        """An expired token: 401, never a ``100 Continue``."""
        token = mint(now=1_600_000_000.0)
        _, transport = self.request(_post(b"Content-Length: 5", token, b"Expect: 100-continue"))
        self.assertRefused(transport, 401)
        self.assertNotIn(b"100 Continue", transport.value())

    def test_valid_token(self) -> None:
        """A valid token: one ``100 Continue`` when the runner asks, before any body byte."""
        protocol, transport = self.request(_post(b"Content-Length: 5", mint(),
                                                 b"Expect: 100-continue"))
        [call] = self.terminal.calls
        self.assertEqual(transport.value(), b"")
        self.assertEqual(transport.producerState, "paused")
        consumer = call.read_body()
        self.assertEqual(transport.value(), _CONTINUE)
        self.assertEqual(consumer.data, b"")
        self.assertEqual(transport.producerState, "producing")
        call.client.start_body(RecordingConsumer())
        protocol.dataReceived(b"hel")
        protocol.dataReceived(b"lo")
        self.assertTrue(consumer.done)
        self.assertEqual(consumer.data, b"hello")
        call.respond(200, b"done")
        self.assertEqual(transport.value().count(b"100 Continue"), 1)
        interim, final = parse_responses(transport.value())
        self.assertEqual((interim.status, final.status, final.body), (100, 200, b"done"))
        self.assertOpen(transport)

    def test_no_continue_without_expect(self) -> None:
        """Without the expectation no interim response is sent."""
        protocol, transport = self.request(_post(b"Content-Length: 5", mint()))
        self.terminal.calls[0].read_body()
        self.assertEqual(transport.value(), b"")

    def test_no_continue_in_http10(self) -> None:
        """HTTP/1.0 clients do not know ``100 Continue``."""
        head = (b"POST /api/chat HTTP/1.0\r\nContent-Length: 5\r\nExpect: 100-continue\r\n"
                b"Authorization: Bearer " + mint().encode() + b"\r\n\r\n")
        protocol, transport = self.request(head)
        self.terminal.calls[0].read_body()
        self.assertEqual(transport.value(), b"")

    def test_no_continue_after_response_head(self) -> None:
        """A runner that answers before reading the body does not get a 100 sent late."""
        protocol, transport = self.request(_post(b"Content-Length: 5", mint(),
                                                 b"Expect: 100-continue"))
        call = self.terminal.calls[0]
        call.send_head(200, call.exchange.response_headers, None)
        call.read_body()
        self.assertNotIn(b"100 Continue", transport.value())

    def test_no_continue_without_body(self) -> None:
        """``Expect`` with an empty body sends no 100."""
        protocol, transport = self.request(_post(b"Content-Length: 0", mint(),
                                                 b"Expect: 100-continue"))
        self.terminal.calls[0].read_body()
        self.assertEqual(transport.value(), b"")


class BackpressureTests(ServerTestCase):
    """Reading from the client follows what the runner can take."""

    def test_paused_until_body_requested(self) -> None:
        """Until the runner asks for the body the client is not read; then it is."""
        protocol, transport = self.request(_post(b"Content-Length: 10") + b"12345")
        self.assertEqual(transport.producerState, "paused")
        call = self.gateway.calls[0]
        consumer = call.read_body()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(consumer.data, b"12345")

    def test_no_pause_for_a_body_already_here_whole(self) -> None:
        """A body that came with its head is not waited for: the client is read on (and a
        disconnect noticed) while the runner decides; the body is still handed over whole,
        and a pipelined request behind it waits its turn."""
        protocol, transport = self.request(_post(b"Content-Length: 10") + b"0123456789"
                                           + b"GET /next HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(self.gateway.calls), 1)
        call = self.gateway.calls[0]
        consumer = call.read_body()
        self.assertEqual((consumer.data, consumer.done), (b"0123456789", True))
        call.respond()
        self.assertEqual(len(self.gateway.calls), 2)

    def test_no_pause_without_body(self) -> None:
        """A request without a body never pauses the client."""
        _, transport = self.request(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(transport.producerState, "producing")

    def test_pause_and_resume(self) -> None:
        """``pause_body``/``resume_body`` pause and resume the client transport."""
        protocol, transport = self.request(_post(b"Content-Length: 10"))
        call = self.gateway.calls[0]
        consumer = call.read_body()
        call.client.pause_body()
        self.assertEqual(transport.producerState, "paused")
        call.client.resume_body()
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(b"0123456789")
        self.assertTrue(consumer.done)

    def test_pause_from_inside_body_data(self) -> None:
        """A consumer that pushes back while receiving data pauses the client at once."""
        protocol, transport = self.request(_post(b"Content-Length: 10"))
        call = self.gateway.calls[0]
        call.read_body(on_data=lambda data: call.client.pause_body())
        protocol.dataReceived(b"01234")
        self.assertEqual(transport.producerState, "paused")

    def test_pipelined_flood_pauses(self) -> None:
        """Pipelined bytes piling up behind an exchange pause the client until its turn."""
        protocol, transport = self.request(b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        flood = b"GET /next HTTP/1.1\r\nHost: gw\r\n\r\n" * 3000
        protocol.dataReceived(flood[:60000])
        self.assertEqual(transport.producerState, "producing")
        protocol.dataReceived(flood[60000:])
        self.assertEqual(transport.producerState, "paused")
        self.gateway.calls[0].respond()
        self.assertEqual(transport.producerState, "producing")
        self.assertEqual(len(self.gateway.calls), 2)


class SplitRequestTests(ServerTestCase):
    """However a request is cut into packets, the same body comes out."""

    def test_random_splits(self) -> None:
        """Random packet boundaries never change a chunked body nor the request after it."""
        rng = random.Random(9112)
        payload = bytes(rng.randrange(256) for _ in range(3000))
        body, offset = b"", 0
        while offset < len(payload):
            size = rng.randrange(1, 400)
            body += b"%x;ext=%d\r\n%s\r\n" % (len(payload[offset : offset + size]), offset,
                                              payload[offset : offset + size])
            offset += size
        body += b"0\r\nX-Trailer: t\r\n\r\n"
        data = (b"POST /api/generate HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
                + body + b"GET /api/tags HTTP/1.1\r\nHost: gw\r\n\r\n")
        splits = [[data[i : i + 1] for i in range(len(data))]]
        for _ in range(40):
            cuts = sorted(rng.sample(range(1, len(data)), rng.randrange(1, 80)))
            splits.append([data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)])
        for pieces in splits:
            self.gateway = StubGateway(echo=True)
            protocol, transport = self.connect()
            for piece in pieces:
                protocol.dataReceived(piece)
            first, second = parse_responses(transport.value())
            self.assertEqual(first.body, b"POST /api/generate:" + payload)
            self.assertEqual(second.body, b"GET /api/tags:")
            self.assertEqual(self.gateway.calls[0].exchange.bytes_in, len(payload))
            self.assertOpen(transport)
