"""Keep-alive, pipelining, response framing, client disconnects and request ids."""

from __future__ import annotations

import attrs
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.python.failure import Failure

from tests.http.support import (
    ServerTestCase,
    StubGateway,
    StubTerminal,
    build_gateway,
    mint,
    parse_responses,
)

__all__ = ["DisconnectTests", "InternalErrorTests", "KeepAliveTests", "PipeliningTests",
           "RequestIdTests", "UnreadBodyTests"]

_GET = b"GET /api/tags HTTP/1.1\r\nHost: gw\r\n\r\n"


class PipeliningTests(ServerTestCase):
    """Several requests sent without waiting for the answers."""

    def test_two_requests_one_packet(self) -> None:
        """Two requests in one packet are both answered, in order."""
        self.gateway = StubGateway(echo=True)
        _, transport = self.request(
            b"POST /first HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /second HTTP/1.1\r\nHost: gw\r\n\r\n")
        first, second = parse_responses(transport.value())
        self.assertEqual((first.body, second.body), (b"POST /first:abc", b"GET /second:"))
        self.assertOpen(transport)

    def test_one_exchange_at_a_time(self) -> None:
        """The second request waits until the first response is complete."""
        protocol, transport = self.request(_GET + b"GET /second HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual(len(self.gateway.calls), 1)
        self.gateway.calls[0].respond(200, b"one")
        self.assertEqual(len(self.gateway.calls), 2)
        self.assertEqual(self.gateway.calls[1].exchange.path, "/second")
        self.gateway.calls[1].respond(200, b"two")
        self.assertEqual([r.body for r in parse_responses(transport.value())], [b"one", b"two"])

    def test_many_refusals_in_one_packet(self) -> None:
        """Thousands of pipelined requests refused at once are all answered, none lost."""
        terminal = StubTerminal(echo=True)
        self.gateway = build_gateway(terminal)
        _, transport = self.request(_GET * 3000)
        responses = parse_responses(transport.value())
        self.assertEqual(len(responses), 3000)
        self.assertEqual({r.status for r in responses}, {401})
        self.assertOpen(transport)

    def test_many_answers_in_one_packet(self) -> None:
        """Thousands of pipelined requests answered at once come back in order."""
        self.gateway = StubGateway(echo=True)
        data = b"".join(b"GET /%d HTTP/1.1\r\nHost: gw\r\n\r\n" % n for n in range(2000))
        _, transport = self.request(data)
        bodies = [r.body for r in parse_responses(transport.value())]
        self.assertEqual(bodies, [b"GET /%d:" % n for n in range(2000)])

    def test_request_after_body_answered_inside_body_end(self) -> None:
        """A request right after a body is served when the runner answers as the body ends."""
        self.gateway = StubGateway(echo=True)
        protocol, transport = self.request(
            b"POST /a HTTP/1.1\r\nHost: gw\r\nContent-Length: 3\r\n\r\n")
        protocol.dataReceived(b"abcGET /b HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertEqual([r.body for r in parse_responses(transport.value())],
                         [b"POST /a:abc", b"GET /b:"])


class KeepAliveTests(ServerTestCase):
    """When the connection stays open after a response."""

    def setUp(self) -> None:
        """Echo every request."""
        super().setUp()
        self.gateway = StubGateway(echo=True)

    def test_http11_stays_open(self) -> None:
        """An HTTP/1.1 exchange leaves the connection open, without a Connection field."""
        _, transport = self.request(_GET)
        [response] = parse_responses(transport.value())
        self.assertIsNone(response.headers.get("connection"))
        self.assertOpen(transport)

    def test_connection_close(self) -> None:
        """``Connection: close`` is honoured and a request pipelined after it is ignored."""
        _, transport = self.request(b"GET / HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"
                                    + _GET)
        [response] = parse_responses(transport.value())
        self.assertEqual(response.headers.get("connection"), "close")
        self.assertTrue(transport.disconnecting)
        self.assertEqual(len(self.gateway.calls), 1)

    def test_connection_close_with_nbsp(self) -> None:
        """``Connection: close`` plus a no-break space is not close: the next request is served."""
        _, transport = self.request(
            b"GET / HTTP/1.1\r\nHost: gw\r\nConnection: close\xa0\r\n\r\n" + _GET)
        self.assertEqual([r.status for r in parse_responses(transport.value())], [200, 200])
        self.assertOpen(transport)

    def test_http10_closes(self) -> None:
        """HTTP/1.0 closes after the response."""
        _, transport = self.request(b"GET / HTTP/1.0\r\n\r\n")
        [response] = parse_responses(transport.value())
        self.assertEqual(response.headers.get("connection"), "close")
        self.assertTrue(transport.disconnecting)

    def test_http10_keep_alive(self) -> None:
        """HTTP/1.0 with ``Connection: keep-alive`` is told so and kept."""
        protocol, transport = self.request(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        [response] = parse_responses(transport.value())
        self.assertEqual(response.headers.get("connection"), "keep-alive")
        self.assertOpen(transport)
        protocol.dataReceived(b"GET /again HTTP/1.0\r\n\r\n")
        self.assertEqual(len(parse_responses(transport.value())), 2)
        self.assertTrue(transport.disconnecting)

    def test_http10_unknown_length_closes(self) -> None:
        """An HTTP/1.0 response of unknown length is ended by closing, not chunked."""
        gateway = StubGateway()
        protocol, transport = self.connect(gateway)
        protocol.dataReceived(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
        gateway.calls[0].respond(200, b"stream", length=None)
        self.assertNotIn(b"Transfer-Encoding", transport.value())
        self.assertTrue(transport.value().endswith(b"\r\n\r\nstream"))
        self.assertIn(b"Connection: close\r\n", transport.value())
        self.assertTrue(transport.disconnecting)


class UnreadBodyTests(ServerTestCase):
    """A request refused before its body was read."""

    def setUp(self) -> None:
        """A real gateway: token filter in front of an echoing terminal."""
        super().setUp()
        self.terminal = StubTerminal(echo=True)
        self.gateway = build_gateway(self.terminal)
        self.auth = b"Authorization: Bearer " + mint().encode("ascii") + b"\r\n"

    def test_small_body_drained(self) -> None:
        """After a 401 with a small unread body, the body is skipped and the next served."""
        protocol, transport = self.request(
            b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\n")
        self.assertOpen(transport)
        protocol.dataReceived(b"0123456789GET /api/tags HTTP/1.1\r\nHost: gw\r\n" + self.auth
                              + b"\r\n")
        refused, served = parse_responses(transport.value())
        self.assertEqual((refused.status, served.status), (401, 200))
        self.assertIsNone(refused.headers.get("connection"))
        self.assertEqual(refused.json(), {"error": "missing bearer token"})
        self.assertEqual(served.body, b"GET /api/tags:")
        self.assertEqual([call.exchange.path for call in self.terminal.calls], ["/api/tags"])
        self.assertOpen(transport)

    def test_large_body_closes(self) -> None:
        """After a 401 with a large unread body, the connection closes instead."""
        _, transport = self.request(
            b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nContent-Length: 2000000\r\n\r\n")
        self.assertRefused(transport, 401)

    def test_chunked_body_closes(self) -> None:
        """After a 401 with an unread chunked body (length unknown), the connection closes."""
        _, transport = self.request(
            b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        self.assertRefused(transport, 401)

    def test_drain_stalls(self) -> None:
        """A body being skipped that stops arriving drops the connection at the read timeout."""
        protocol, transport = self.request(
            b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\n01234",
            timeouts=attrs.evolve(self.timeouts, min_body_data_rate=0))
        self.clock.advance(29.9)
        self.assertOpen(transport)
        self.clock.advance(0.1)
        self.assertTrue(transport.disconnecting)
        self.assertEqual([r.status for r in parse_responses(transport.value())], [401])


class DisconnectTests(ServerTestCase):
    """The client goes away mid-exchange."""

    def test_when_gone_fires_at_once(self) -> None:
        """``when_gone`` callbacks run as soon as the connection is lost, even if late."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        fired: list[str] = []
        call.client.when_gone(lambda: fired.append("first"))
        call.client.when_gone(lambda: fired.append("second"))
        self.assertEqual(fired, [])
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertEqual(fired, ["first", "second"])
        self.assertTrue(call.client.gone)
        self.assertEqual(call.exchange.outcome, "client_gone")
        call.client.when_gone(lambda: fired.append("late"))
        self.assertEqual(fired, ["first", "second", "late"])

    def test_writes_after_disconnect_ignored(self) -> None:
        """Nothing is written once the client is gone, and ending the exchange is harmless."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        protocol.connectionLost(Failure(ConnectionDone()))
        call.respond(200, b"late")
        self.assertEqual(transport.value(), b"")
        self.assertFalse(call.client.head_sent)

    def test_disconnect_mid_body(self) -> None:
        """A client leaving mid-body fails the runner's body at once."""
        protocol, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 10\r\n\r\n123")
        call = self.gateway.calls[0]
        consumer = call.read_body()
        protocol.connectionLost(Failure(ConnectionLost()))
        self.assertIsInstance(consumer.failure, ConnectionError)
        self.assertFalse(consumer.done)

    def test_disconnect_mid_response(self) -> None:
        """A client leaving mid-response stops further writes and timers."""
        protocol, transport = self.request(_GET)
        call = self.gateway.calls[0]
        call.send_head(200, call.exchange.response_headers, None)
        protocol.connectionLost(Failure(ConnectionLost()))
        written = transport.value()
        call.client.write(b"more")
        call.client.finish()
        call.end()
        self.assertEqual(transport.value(), written)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_gateway_ends_without_response(self) -> None:
        """An exchange that ends without a response drops the connection, with a warning."""
        protocol, transport = self.request(_GET)
        self.gateway.calls[0].end()
        self.assertTrue(transport.disconnected)
        warnings = [e for e in self.events if "without a complete response" in e["log_format"]]
        self.assertEqual(len(warnings), 1)

    def test_gateway_failure_logged(self) -> None:
        """A gateway whose Deferred fails drops the connection and the failure is logged."""
        protocol, transport = self.request(_GET)
        self.gateway.calls[0].finished.errback(RuntimeError("boom"))
        self.assertTrue(transport.disconnected)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.events[:] = [e for e in self.events if "log_failure" not in e]


class RequestIdTests(ServerTestCase):
    """The ``X-Request-Id`` a client can quote."""

    def setUp(self) -> None:
        """Echo every request."""
        super().setUp()
        self.gateway = StubGateway(echo=True)

    def request_id(self, offered: bytes | None) -> tuple[str, str]:
        """Send a request offering ``offered``; return the exchange's and the response's ids."""
        field = b"" if offered is None else b"X-Request-Id: " + offered + b"\r\n"
        _, transport = self.request(b"GET / HTTP/1.1\r\nHost: gw\r\n" + field + b"\r\n")
        [response] = parse_responses(transport.value())
        return self.gateway.calls[0].exchange.request_id, response.headers.get("x-request-id")

    def assertGenerated(self, offered: bytes | None) -> None:
        """The offered id was replaced by a fresh 32-hex-digit id, echoed in the response."""
        exchange_id, response_id = self.request_id(offered)
        self.assertEqual(exchange_id, response_id)
        self.assertRegex(exchange_id, r"\A[0-9a-f]{32}\Z")
        if offered is not None:
            self.assertNotEqual(exchange_id.encode(), offered)

    def test_valid_id_kept(self) -> None:
        """A well-formed id is kept and returned."""
        self.assertEqual(self.request_id(b"trace-01.A:b_c"), ("trace-01.A:b_c", "trace-01.A:b_c"))

    def test_longest_id_kept(self) -> None:
        """An id of 128 characters is kept."""
        offered = b"a" * 128
        self.assertEqual(self.request_id(offered), (offered.decode(), offered.decode()))

    def test_missing_id_generated(self) -> None:
        """Without an id one is made up."""
        self.assertGenerated(None)

    def test_overlong_id_replaced(self) -> None:
        """An id over 128 characters is replaced."""
        self.assertGenerated(b"a" * 129)

    def test_invalid_ids_replaced(self) -> None:
        """Ids with spaces, quotes, slashes, non-ASCII or nothing at all are replaced."""
        for offered in (b"a b", b'a"b', b"a/b", b"caf\xe9", b"", b"a\tb", b"<script>"):
            with self.subTest(offered=offered):
                self.gateway = StubGateway(echo=True)
                self.assertGenerated(offered)

    def test_response_header_not_spoofable(self) -> None:
        """The runner cannot replace the id in the response."""
        gateway = StubGateway()
        protocol, transport = self.connect(gateway)
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: mine\r\n\r\n")
        gateway.calls[0].respond(200, b"x", (("X-Request-Id", "theirs"),))
        [response] = parse_responses(transport.value())
        self.assertEqual(response.headers.get_all("x-request-id"), ["mine"])

    def test_refused_body_carries_id(self) -> None:
        """A body refused midway (here: stalled) is answered with the exchange's id."""
        gateway = StubGateway()
        protocol, transport = self.connect(gateway)
        protocol.dataReceived(b"POST / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: slow-1\r\n"
                              b"Content-Length: 5\r\n\r\n")
        gateway.calls[0].read_body()
        self.clock.advance(30.0)
        response = self.assertRefused(transport, 408)
        self.assertEqual(response.headers.get("x-request-id"), "slow-1")


class _BrokenFilter:
    """A filter with a bug."""

    name = "broken"

    def request_headers(self, exchange: object) -> None:
        raise ZeroDivisionError("bug")

    def response_headers(self, exchange: object) -> None:
        pass

    def done(self, exchange: object) -> None:
        pass


class InternalErrorTests(ServerTestCase):
    """A bug in a filter, seen from the client."""

    def test_internal_error_names_request_id(self) -> None:
        """A filter bug gives a 500 quoting the request id, logged; the runner is not called."""
        terminal = StubTerminal(echo=True)
        protocol, transport = self.connect(build_gateway(terminal, filters=(_BrokenFilter(),)))
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: gw\r\nX-Request-Id: abc-123\r\n\r\n")
        [response] = parse_responses(transport.value())
        self.assertEqual(response.status, 500)
        self.assertEqual(response.json(), {"error": "internal error (request abc-123)"})
        self.assertEqual(response.headers.get("x-request-id"), "abc-123")
        self.assertEqual(terminal.calls, [])
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)
        self.events[:] = [e for e in self.events if "log_failure" not in e]
        self.assertOpen(transport)
