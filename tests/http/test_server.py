"""The front door refuses malformed and oversized request heads, answered at once and closed."""

from __future__ import annotations

import random

from runnergw.http.head import HeadLimits
from tests.http.support import ServerTestCase, StubGateway, parse_responses

__all__ = ["FramingTests", "HeadLimitTests", "HeadSyntaxTests", "RefusalLogTests",
           "SplitHeadTests"]

_HOST = b"Host: gw\r\n"


class _RefusalTestCase(ServerTestCase):
    """Send one request and check it is refused before the gateway sees it."""

    def assertRefusedRequest(self, data: bytes, status: int, **options: object) -> None:
        """``data`` in one piece gets ``status``, the connection closes, no exchange starts."""
        _, transport = self.request(data, **options)
        self.assertRefused(transport, status)
        self.assertEqual(self.gateway.calls, [])


class FramingTests(_RefusalTestCase):
    """Ambiguous or unsupported body framing (request smuggling attempts)."""

    def test_transfer_encoding_with_content_length(self) -> None:
        """Transfer-Encoding and Content-Length together: 400."""
        self.assertRefusedRequest(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)

    def test_two_different_content_lengths(self) -> None:
        """Two different Content-Length fields: 400."""
        self.assertRefusedRequest(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 3\r\n\r\nhello",
            400)

    def test_two_equal_content_lengths(self) -> None:
        """Two equal Content-Length fields: 400 as well."""
        self.assertRefusedRequest(
            b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            400)

    def test_gzip_chunked(self) -> None:
        """``Transfer-Encoding: gzip, chunked`` is not implemented: 501."""
        self.assertRefusedRequest(
            b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
            501)

    def test_identity(self) -> None:
        """``Transfer-Encoding: identity`` is not implemented: 501."""
        self.assertRefusedRequest(
            b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: identity\r\n\r\n", 501)

    def test_chunked_followed_by_nbsp(self) -> None:
        """``Transfer-Encoding: chunked`` plus a non-breaking space is not chunked: 501."""
        self.assertRefusedRequest(
            b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\xa0\r\n\r\n0\r\n\r\n",
            501)

    def test_transfer_encoding_in_http10(self) -> None:
        """Transfer-Encoding in an HTTP/1.0 request: 400."""
        self.assertRefusedRequest(
            b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400)

    def test_bad_content_lengths(self) -> None:
        """Non-numeric, negative, signed and huge Content-Length values: 400."""
        for value in (b"abc", b"-1", b"+5", b"0x10", b"", b"9" * 30):
            with self.subTest(value=value):
                self.gateway = StubGateway()
                self.assertRefusedRequest(
                    b"POST / HTTP/1.1\r\nHost: gw\r\nContent-Length: " + value + b"\r\n\r\n", 400)

    def test_malformed_chunk_sizes(self) -> None:
        """A malformed chunk size met while streaming the body: 400 and the exchange fails."""
        for chunk in (b"0x10\r\n", b"-1\r\n", b"1_0\r\n", b" 5\r\n", b"5\x0b\r\n",
                      b"5;" + b"x" * 2000, b"5\r\nhelloXX"):
            with self.subTest(chunk=chunk):
                self.gateway = StubGateway()
                protocol, transport = self.request(
                    b"POST /api/chat HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
                [call] = self.gateway.calls
                consumer = call.read_body()
                protocol.dataReceived(chunk)
                self.assertRefused(transport, 400)
                self.assertIsInstance(consumer.failure, Exception)
                self.assertEqual(call.exchange.status, 400)
                self.assertEqual(call.exchange.outcome, "client_error")

    def test_trailers_too_long(self) -> None:
        """Endless trailer fields after the last chunk: 400, without waiting for their end."""
        protocol, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        consumer = self.gateway.calls[0].read_body()
        protocol.dataReceived(b"0\r\n")
        for n in range(40):
            if transport.disconnecting:
                break
            protocol.dataReceived(b"X-%d: %s\r\n" % (n, b"a" * 1000))
        self.assertRefused(transport, 400)
        self.assertIsNotNone(consumer.failure)


    def test_request_in_trailers(self) -> None:
        """A request hidden after the last chunk behind a bare LF: 400 and close, not skipped."""
        protocol, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n")
        consumer = self.gateway.calls[0].read_body()
        protocol.dataReceived(b"3\r\nabc\r\n")
        protocol.dataReceived(b"0\r\n\nGET /smuggled HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertRefused(transport, 400)
        self.assertEqual(consumer.data, b"abc")
        self.assertIsNotNone(consumer.failure)
        self.assertEqual(len(self.gateway.calls), 1)

    def test_trailers_not_forwarded(self) -> None:
        """Well-formed trailer fields are read and dropped: the exchange never sees them."""
        self.gateway = StubGateway(echo=True)
        _, transport = self.request(
            b"POST / HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"3\r\nabc\r\n0\r\nX-Checksum: 1\r\n\r\n")
        [response] = parse_responses(transport.value())
        self.assertEqual((response.status, response.body), (200, b"POST /:abc"))
        exchange = self.gateway.calls[0].exchange
        self.assertNotIn("x-checksum", exchange.headers)
        self.assertNotIn("x-checksum", exchange.upstream_headers)
        self.assertOpen(transport)


class HeadLimitTests(_RefusalTestCase):
    """Request lines and header blocks beyond the limits."""

    def test_request_line_too_long(self) -> None:
        """A request line over 8192 bytes is 414."""
        self.assertRefusedRequest(b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n" + _HOST + b"\r\n", 414)

    def test_request_line_too_long_without_crlf(self) -> None:
        """A long request line is answered 414 before its CRLF ever comes."""
        self.assertRefusedRequest(b"GET /" + b"a" * 8200, 414)

    def test_request_line_too_long_before_end_of_head(self) -> None:
        """A long request line with its CRLF is answered before the end of the head."""
        self.assertRefusedRequest(b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\n", 414)

    def test_request_line_at_limit_split_before_lf(self) -> None:
        """A request line of exactly 8192 bytes whose LF comes in a later packet is fine."""
        self.gateway = StubGateway(echo=True)
        line = b"GET /" + b"a" * (8192 - len(b"GET / HTTP/1.1")) + b" HTTP/1.1"
        protocol, transport = self.request(line + b"\r")
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(b"\n" + _HOST + b"\r\n")
        self.assertStatusLine(transport, 200)

    def test_field_too_long(self) -> None:
        """A header field over 8192 bytes is 431."""
        self.assertRefusedRequest(
            b"GET / HTTP/1.1\r\n" + _HOST + b"X-Big: " + b"a" * 8200 + b"\r\n\r\n", 431)

    def test_field_too_long_without_crlf(self) -> None:
        """A long header field is answered 431 before its CRLF comes."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\n" + _HOST + b"X-Big: " + b"a" * 8200, 431)

    def test_field_too_long_before_end_of_head(self) -> None:
        """A long header field with its CRLF is answered before the end of the head."""
        self.assertRefusedRequest(
            b"GET / HTTP/1.1\r\n" + _HOST + b"X-Big: " + b"a" * 8200 + b"\r\nX-Next: 1\r\n", 431)

    def test_too_many_fields(self) -> None:
        """More than 100 header fields is 431."""
        fields = b"".join(b"X-%d: 1\r\n" % n for n in range(101))
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\n" + _HOST + fields + b"\r\n", 431)

    def test_too_many_fields_before_end_of_head(self) -> None:
        """Too many fields are noticed without waiting for the end of the head."""
        fields = b"".join(b"X-%d: 1\r\n" % n for n in range(101))
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\n" + _HOST + fields, 431)

    def test_header_block_too_large(self) -> None:
        """A header block over 64 KiB is 431 even when each field is within limits."""
        fields = b"".join(b"X-%d: %s\r\n" % (n, b"a" * 8000) for n in range(9))
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\n" + _HOST + fields + b"\r\n", 431)

    def test_header_block_too_large_before_end_of_head(self) -> None:
        """A header block over 64 KiB is refused while it is still arriving."""
        fields = b"".join(b"X-%d: %s\r\n" % (n, b"a" * 8000) for n in range(9))
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\n" + _HOST + fields, 431)

    def test_header_block_too_large_in_pieces(self) -> None:
        """Fields trickling in are refused as soon as the block passes the limit."""
        protocol, transport = self.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n" + _HOST)
        sent = 0
        while not transport.disconnecting and sent < 100:
            protocol.dataReceived(b"X-%d: %s\r\n" % (sent, b"a" * 8000))
            sent += 1
        self.assertEqual(sent, 9)
        self.assertRefused(transport, 431)

    def test_configured_limits(self) -> None:
        """Smaller configured limits are applied."""
        limits = HeadLimits(max_line=100, max_fields=3, max_bytes=300)
        self.assertRefusedRequest(b"GET /" + b"a" * 100, 414, limits=limits)
        self.gateway = StubGateway()
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\nHost: gw\r\nA: 1\r\nB: 2\r\nC: 3\r\n",
                                  431, limits=limits)

    def test_within_limits(self) -> None:
        """A large head that respects every limit is served."""
        self.gateway = StubGateway(echo=True)
        fields = b"".join(b"X-%d: %s\r\n" % (n, b"a" * 8000) for n in range(7))
        _, transport = self.request(b"GET / HTTP/1.1\r\n" + _HOST + fields + b"\r\n")
        self.assertStatusLine(transport, 200)
        self.assertOpen(transport)


class HeadSyntaxTests(_RefusalTestCase):
    """Host, version, target form and field syntax."""

    def test_missing_host(self) -> None:
        """HTTP/1.1 without Host: 400."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400)

    def test_duplicate_host(self) -> None:
        """Two Host fields: 400."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400)

    def test_malformed_host(self) -> None:
        """``Host: a b``: 400, and the runner never sees it."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400)

    def test_empty_host(self) -> None:
        """An empty Host field: 400."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\nHost:\r\n\r\n", 400)

    def test_http10_without_host(self) -> None:
        """HTTP/1.0 without Host is served, then the connection closes."""
        self.gateway = StubGateway(echo=True)
        _, transport = self.request(b"GET /api/tags HTTP/1.0\r\n\r\n")
        [response] = parse_responses(transport.value())
        self.assertEqual((response.status, response.body), (200, b"GET /api/tags:"))
        self.assertEqual(response.headers.get("connection"), "close")
        self.assertTrue(transport.disconnecting)

    def test_http2(self) -> None:
        """An HTTP/2.0 request line: 505."""
        self.assertRefusedRequest(b"GET / HTTP/2.0\r\n" + _HOST + b"\r\n", 505)

    def test_http2_preface(self) -> None:
        """The HTTP/2 connection preface (prior knowledge) gets 505."""
        self.assertRefusedRequest(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505)

    def test_absolute_form(self) -> None:
        """An absolute-form target: 400 (not a forward proxy)."""
        self.assertRefusedRequest(b"GET http://evil/ HTTP/1.1\r\n" + _HOST + b"\r\n", 400)

    def test_asterisk_form(self) -> None:
        """``OPTIONS *``: 400."""
        self.assertRefusedRequest(b"OPTIONS * HTTP/1.1\r\n" + _HOST + b"\r\n", 400)

    def test_fragment_in_target(self) -> None:
        """``GET /api/tags#frag``: 400, and the runner never sees it."""
        self.assertRefusedRequest(b"GET /api/tags#frag HTTP/1.1\r\n" + _HOST + b"\r\n", 400)

    def test_obs_fold(self) -> None:
        """Obsolete line folding: 400."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\n" + _HOST + b"X-A: 1\r\n  2\r\n\r\n", 400)

    def test_whitespace_before_colon(self) -> None:
        """``Content-Length : 5``: 400."""
        self.assertRefusedRequest(
            b"POST / HTTP/1.1\r\n" + _HOST + b"Content-Length : 5\r\n\r\nhello", 400)

    def test_control_characters(self) -> None:
        """A NUL in a field value: 400."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\n" + _HOST + b"X-A: a\x00b\r\n\r\n", 400)

    def test_bare_lf_inside_head(self) -> None:
        """A bare LF ending one field: 400."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\nHost: gw\nX-A: 1\r\n\r\n", 400)

    def test_bare_lf_request(self) -> None:
        """A request with only bare LF line ends is refused at once, not left to time out."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\nHost: gw\n\n", 400)

    def test_bare_cr_request(self) -> None:
        """A bare CR in the request line is refused at once."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\rHost: gw\r", 400)

    def test_leading_empty_lines(self) -> None:
        """Empty lines before a request line are ignored (RFC 9112 section 2.2)."""
        self.gateway = StubGateway(echo=True)
        _, transport = self.request(b"\r\n\r\nGET / HTTP/1.1\r\n" + _HOST + b"\r\n")
        self.assertStatusLine(transport, 200)

    def test_bare_lf_before_request_line(self) -> None:
        """A bare LF before the request line is not an empty line: 400, not served."""
        self.assertRefusedRequest(b"\nGET / HTTP/1.1\r\n" + _HOST + b"\r\n", 400)
        self.assertRefusedRequest(b"\r\n\nGET / HTTP/1.1\r\n" + _HOST + b"\r\n", 400)

    def test_bare_cr_before_request_line(self) -> None:
        """A bare CR before the request line is not an empty line: 400, not served."""
        self.assertRefusedRequest(b"\rGET / HTTP/1.1\r\n" + _HOST + b"\r\n", 400)
        self.assertRefusedRequest(b"\r\n\r\rGET / HTTP/1.1\r\n" + _HOST + b"\r\n", 400)

    def test_empty_line_cut_between_cr_and_lf(self) -> None:
        """An empty line whose LF comes in a later packet is still an empty line."""
        self.gateway = StubGateway(echo=True)
        protocol, transport = self.request(b"\r\n\r")
        self.assertEqual(transport.value(), b"")
        protocol.dataReceived(b"\nGET / HTTP/1.1\r\n" + _HOST + b"\r\n")
        self.assertStatusLine(transport, 200)

    def test_bare_lf_between_pipelined_requests(self) -> None:
        """A stray LF after a served request makes the next one a 400, not a second request."""
        self.gateway = StubGateway(echo=True)
        request = b"GET / HTTP/1.1\r\n" + _HOST + b"\r\n"
        _, transport = self.request(request + b"\r\n\n" + request)
        first, second = parse_responses(transport.value())
        self.assertEqual((first.status, second.status), (200, 400))
        self.assertEqual(len(self.gateway.calls), 1)
        self.assertTrue(transport.disconnecting)

    def test_unsupported_expectation(self) -> None:
        """``Expect: something-else``: 417."""
        self.assertRefusedRequest(b"GET / HTTP/1.1\r\n" + _HOST + b"Expect: 200-ok\r\n\r\n", 417)


class RefusalLogTests(_RefusalTestCase):
    """What an operator sees about refused requests."""

    def test_refusal_logged_without_traceback(self) -> None:
        """A refusal is one info line with the peer, status and reason; no traceback."""
        self.assertRefusedRequest(b"GET / HTTP/2.0\r\n" + _HOST + b"\r\n", 505)
        events = [event for event in self.events if event.get("event") == "bad_request"]
        self.assertEqual(len(events), 1)
        self.assertEqual((events[0]["status"], events[0]["peer"]), (505, "192.168.1.1"))
        self.assertNotIn("log_failure", events[0])

    def test_refusal_counted_by_status(self) -> None:
        """The factory counts refusals made before any exchange, by status (the metrics
        read it: the chain never sees these requests)."""
        protocol, _ = self.request(b"GET / HTTP/2.0\r\n" + _HOST + b"\r\n")
        self.assertEqual(protocol.factory.refused, {505: 1})


class SplitHeadTests(_RefusalTestCase):
    """However a bad head is cut into packets, the answer is the same."""

    _CASES = (
        (b"GET /" + b"a" * 8200 + b" HTTP/1.1\r\nHost: gw\r\n\r\n", 414),
        (b"GET / HTTP/1.1\r\nHost: gw\r\nX-Big: " + b"a" * 8200 + b"\r\n\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: gw\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: gw\r\n" + b"X-A: " + b"a" * 8000 + b"\r\n" * 1
         + (b"X-B: " + b"b" * 8000 + b"\r\n") * 8 + b"\r\n", 431),
        (b"GET / HTTP/1.1\r\nHost: gw\nX-A: 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: gw\r\nX-A: 1\r\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: gw\r\nX-A : 1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: gw\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
         400),
        (b"GET / HTTP/2.0\r\nHost: gw\r\n\r\n", 505),
        (b"\r\n\rGET / HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
        (b"\r\n\nGET / HTTP/1.1\r\nHost: gw\r\n\r\n", 400),
    )

    def test_byte_by_byte(self) -> None:
        """Bad heads sent a byte at a time get the same status as sent whole."""
        for data, status in self._CASES:
            with self.subTest(data=data[:40], status=status):
                self.gateway = StubGateway()
                protocol, transport = self.connect()
                for index in range(len(data)):
                    protocol.dataReceived(data[index : index + 1])
                self.assertRefused(transport, status)
                self.assertEqual(self.gateway.calls, [])

    def test_random_splits(self) -> None:
        """Bad heads cut at random places (fixed seed) get the same status as sent whole."""
        rng = random.Random(414431)
        for data, status in self._CASES:
            for _ in range(20):
                cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1,
                                                                  rng.randrange(1, 12))))
                pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
                with self.subTest(data=data[:40], cuts=cuts):
                    self.gateway = StubGateway()
                    protocol, transport = self.connect()
                    for piece in pieces:
                        protocol.dataReceived(piece)
                    self.assertRefused(transport, status)
