"""A runner's response head and body framing, parsed strictly; fed whole and in awkward pieces."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.http.body import BodyDecoder
from runnergw.upstream.response import (
    ResponseHead,
    UpstreamProtocolError,
    body_decoder,
    parse_response_head,
)
from tests.helpers.body_pieces import decode_in_pieces, splits

__all__ = ["BodyFramingTests", "FieldTests", "FramingTests", "StatusLineTests"]

SECRET = b"s3cr3t-value"


def head(*fields: bytes, status_line: bytes = b"HTTP/1.1 200 OK") -> bytes:
    """A response head block (without the final CRLFCRLF)."""
    return b"\r\n".join((status_line, *fields))


class StatusLineTests(SynchronousTestCase):
    """Only an HTTP/1.x status line with three ASCII digits is an answer."""

    def test_well_formed_status_lines(self) -> None:
        """Ordinary status lines, with or without a reason phrase, are understood."""
        for line, status in ((b"HTTP/1.1 200 OK", 200), (b"HTTP/1.0 404 Not Found", 404),
                             (b"HTTP/1.1 204 ", 204), (b"HTTP/1.1 503", 503),
                             (b"HTTP/1.1 200 \xe9t\xe9\tfine", 200)):
            with self.subTest(line=line):
                self.assertEqual(parse_response_head(line, "GET").status, status)

    def test_malformed_status_lines_are_refused(self) -> None:
        """A runner that does not speak HTTP/1.x, or garbles its status, gets no answer through."""
        for line in (b"HTTP/2 200 OK", b"HTTP/1.2 200 OK", b"HTTP/0.9 200 OK", b"http/1.1 200 OK",
                     b"ICY 200 OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 2000 OK", b"HTTP/1.1  200 OK",
                     b"HTTP/1.1 +20 OK", b"HTTP/1.1 \xb2\xb2\xb2 OK",
                     "HTTP/1.1 ٢٠٠ OK".encode(), b"HTTP/1.1 200 O\x00K",
                     b"HTTP/1.1 200 OK\rX: y", b"HTTP/1.1 200 OK\nX: y", b"",
                     b" HTTP/1.1 200 OK"):
            with self.subTest(line=line), self.assertRaises(UpstreamProtocolError):
                parse_response_head(line, "GET")

    def test_status_codes_out_of_range_are_refused(self) -> None:
        """Codes outside 100..599 (RFC 9110 §15) are refused rather than passed on."""
        for line in (b"HTTP/1.1 000 X", b"HTTP/1.1 099 X", b"HTTP/1.1 600 X", b"HTTP/1.1 999 X"):
            with self.subTest(line=line), self.assertRaises(UpstreamProtocolError):
                parse_response_head(line, "GET")


class FieldTests(SynchronousTestCase):
    """Header fields that could split the client's response never reach it."""

    def test_fields_are_kept_in_order_and_trimmed_of_blanks_only(self) -> None:
        """Values lose surrounding spaces and tabs, never other characters such as \\xa0."""
        parsed = parse_response_head(head(
            b"Content-Type:  application/json \t", b"X-A:\t\xa0a\tb\x85 ", b"X-Empty:",
            b"Content-Length: 2"), "GET")
        self.assertEqual(list(parsed.headers), [
            ("Content-Type", "application/json"), ("X-A", "\xa0a\tb\x85"), ("X-Empty", ""),
            ("Content-Length", "2")])

    def test_control_characters_in_values_are_refused(self) -> None:
        """A bare CR or LF, NUL or other control character in a value fails the response."""
        for bad in (b"\r", b"\n", b"\x00", b"\x1b", b"\x7f", b"\x0b", b"\x0c"):
            with self.subTest(bad=bad):
                with self.assertRaises(UpstreamProtocolError) as caught:
                    parse_response_head(head(b"X-Token: " + SECRET + bad + b"Set-Cookie: a=b",
                                             b"Content-Length: 0"), "GET")
                self.assertIn("X-Token", str(caught.exception))
                self.assertNotIn(SECRET.decode(), str(caught.exception))

    def test_field_names_that_are_not_tokens_are_refused(self) -> None:
        """Names with spaces, separators, non-ASCII or nothing at all fail the response."""
        for line in (b"X Token: 1", b"X-Token : 1", b"X@Token: 1", b"X-T\xf6ken: 1", b": 1",
                     b"NoColon", b"X-Token\x00: 1", b"(X): 1", b"X-" + SECRET + b"\x01: 1"):
            with self.subTest(line=line):
                with self.assertRaises(UpstreamProtocolError) as caught:
                    parse_response_head(head(line), "GET")
                self.assertNotIn(SECRET.decode(), str(caught.exception))

    def test_obsolete_line_folding_is_refused(self) -> None:
        """A field continued on a line starting with a space or tab fails the response."""
        for fold in (b" " + SECRET, b"\t" + SECRET):
            with self.subTest(fold=fold):
                with self.assertRaises(UpstreamProtocolError) as caught:
                    parse_response_head(head(b"X-Token: a", fold, b"Content-Length: 0"), "GET")
                self.assertIn("folding", str(caught.exception))
                self.assertNotIn(SECRET.decode(), str(caught.exception))

    def test_hop_by_hop_fields_are_dropped(self) -> None:
        """Connection-level fields, and those the runner names in Connection, are not relayed."""
        parsed = parse_response_head(head(
            b"Connection: keep-alive, X-Hop", b"Keep-Alive: timeout=5", b"X-Hop: 1",
            b"Transfer-Encoding: chunked", b"X-Kept: 2"), "GET")
        self.assertEqual(list(parsed.headers), [("X-Kept", "2")])


class FramingTests(SynchronousTestCase):
    """Where a response body ends is decided one way, or the response is refused."""

    def framing(self, *fields: bytes, status_line: bytes = b"HTTP/1.1 200 OK",
                method: str = "GET") -> ResponseHead:
        """Parse a head with ``fields``."""
        return parse_response_head(head(*fields, status_line=status_line), method)

    def test_content_length_is_ascii_digits(self) -> None:
        """A Content-Length of digits, blanks around it, gives the body's length."""
        for value, length in ((b"0", 0), (b"42", 42), (b" 42\t", 42), (b"007", 7),
                              (b"999999999999999999", 999999999999999999)):
            with self.subTest(value=value):
                self.assertEqual(self.framing(b"Content-Length: " + value).content_length,
                                 length)

    def test_malformed_content_length_is_refused(self) -> None:
        """Signs, hex, Unicode digits (such as \\xb2) and empty values fail, never crash."""
        for value in (b"\xb2", b"\xb9", b"1\xb3", "١".encode(), "４２".encode(), b"", b"+1",
                      b"-1", b"0x10", b"1e3", b"1 2", b"1_000", b"4\xa02", b"1,", b",1",
                      b"1234567890123456789"):
            with self.subTest(value=value), self.assertRaises(UpstreamProtocolError):
                self.framing(b"Content-Length: " + value)

    def test_repeated_content_length_must_agree(self) -> None:
        """The same length repeated is one length; two different ones fail the response."""
        self.assertEqual(self.framing(b"Content-Length: 5, 5").content_length, 5)
        self.assertEqual(self.framing(b"Content-Length: 5", b"content-length: 05").content_length,
                         5)
        for fields in ((b"Content-Length: 5, 6",), (b"Content-Length: 5", b"Content-Length: 6")):
            with self.subTest(fields=fields), self.assertRaises(UpstreamProtocolError):
                self.framing(*fields)

    def test_transfer_encoding_with_content_length_is_refused(self) -> None:
        """A response framed two ways is refused, not guessed at (smuggling, RFC 9112 §6.3)."""
        for fields in ((b"Transfer-Encoding: chunked", b"Content-Length: 5"),
                       (b"Content-Length: 5", b"Transfer-Encoding: chunked")):
            with self.subTest(fields=fields), self.assertRaises(UpstreamProtocolError):
                self.framing(*fields)

    def test_only_chunked_transfer_coding_is_accepted(self) -> None:
        """Codings the gateway would relay still encoded fail the response."""
        self.assertTrue(self.framing(b"Transfer-Encoding:  Chunked\t").chunked)
        for fields in ((b"Transfer-Encoding: gzip, chunked",),
                       (b"Transfer-Encoding: gzip", b"Transfer-Encoding: chunked"),
                       (b"Transfer-Encoding: chunked, chunked",),
                       (b"Transfer-Encoding: chunked",  b"Transfer-Encoding: chunked"),
                       (b"Transfer-Encoding: chunked, ",), (b"Transfer-Encoding: identity",),
                       (b"Transfer-Encoding: chunked\xa0",), (b"Transfer-Encoding:",)):
            with self.subTest(fields=fields), self.assertRaises(UpstreamProtocolError):
                self.framing(*fields)

    def test_transfer_encoding_in_http10_is_refused(self) -> None:
        """An HTTP/1.0 response cannot be chunked; one that says so is refused."""
        with self.assertRaises(UpstreamProtocolError):
            self.framing(b"Transfer-Encoding: chunked", status_line=b"HTTP/1.0 200 OK")

    def test_keep_alive(self) -> None:
        """Connections are reused only when both HTTP version and framing allow it."""
        cases = (
            ((b"Content-Length: 1",), b"HTTP/1.1 200 OK", True),
            ((b"Content-Length: 1", b"Connection: close"), b"HTTP/1.1 200 OK", False),
            ((b"Transfer-Encoding: chunked",), b"HTTP/1.1 200 OK", True),
            ((), b"HTTP/1.1 200 OK", False),
            ((b"Content-Length: 1",), b"HTTP/1.0 200 OK", False),
            ((b"Content-Length: 1", b"Connection: Keep-Alive"), b"HTTP/1.0 200 OK", True),
            ((b"Connection: keep-alive",), b"HTTP/1.0 200 OK", False),
            ((), b"HTTP/1.1 204 No Content", True),
        )
        for fields, status_line, keep_alive in cases:
            with self.subTest(fields=fields, status_line=status_line):
                self.assertEqual(self.framing(*fields, status_line=status_line).keep_alive,
                                 keep_alive)

    def test_bodiless_responses(self) -> None:
        """HEAD, 204 and 304 answers end at their head, whatever length they announce."""
        parsed = self.framing(b"Content-Length: 10", method="HEAD")
        self.assertEqual((parsed.content_length, parsed.chunked), (10, False))
        self.assertTrue(body_decoder(parsed, "HEAD").done)
        for status_line in (b"HTTP/1.1 204 No Content", b"HTTP/1.1 304 Not Modified"):
            parsed = self.framing(b"Transfer-Encoding: chunked", status_line=status_line)
            self.assertFalse(parsed.chunked)
            self.assertTrue(body_decoder(parsed, "GET").done)


class BodyFramingTests(SynchronousTestCase):
    """Bodies end where their framing says, however the runner's bytes are cut."""

    def decoder(self, *fields: bytes) -> BodyDecoder:
        """The body decoder for a 200 answer to GET with ``fields``."""
        return body_decoder(parse_response_head(head(*fields), "GET"), "GET")

    def test_content_length_body_split_anywhere(self) -> None:
        """A fixed-length body is the same however it arrives; what follows is kept apart."""
        for pieces in splits(b"hello, worldHTTP/1.1"):
            decoder = self.decoder(b"Content-Length: 12")
            self.assertEqual(decode_in_pieces(decoder, pieces), (b"hello, world", b"HTTP/1.1"))
            self.assertTrue(decoder.done)

    def test_chunked_body_split_anywhere(self) -> None:
        """Chunk sizes, extensions, data and trailers may be cut at any byte."""
        wire = (b"5\r\nhello\r\n7;name=value\r\n, world\r\n1; a=\"q;uoted\"\r\n!\r\n"
                b"A\r\n0123456789\r\n0\r\nX-Trailer: yes\r\nX-Other:\t2\r\n\r\nleftover")
        for pieces in splits(wire):
            decoder = self.decoder(b"Transfer-Encoding: chunked")
            self.assertEqual(decode_in_pieces(decoder, pieces),
                             (b"hello, world!0123456789", b"leftover"))
            self.assertTrue(decoder.done)

    def test_until_close_body(self) -> None:
        """Without a length, every byte until the runner closes is the body."""
        decoder = self.decoder()
        self.assertEqual(decode_in_pieces(decoder, [b"a\r\n0\r\n\r\n", b"b"]),
                         (b"a\r\n0\r\n\r\nb", b""))
        self.assertFalse(decoder.done)

    def test_malformed_chunk_sizes_are_refused(self) -> None:
        """A chunk size that is not plain ASCII hex fails the response, never crashes."""
        for size in (b"", b" 5", b"+5", b"-5", b"0x5", b"5_0", b"\xb2", "٥".encode(),
                     "５".encode(), b"g", b"1234567890abcdef", b"5\x00", b"5;\x00",
                     b"5;ext\r", b"5;ext\nX", b"5 \x0b"):
            with self.subTest(size=size):
                decoder = self.decoder(b"Transfer-Encoding: chunked")
                with self.assertRaises(UpstreamProtocolError):
                    decoder.feed(size + b"\r\nhello\r\n0\r\n\r\n")

    def test_chunk_data_must_end_with_crlf(self) -> None:
        """Chunk data longer than its size, or ended by a bare LF, fails the response."""
        for wire in (b"2\r\nabc\r\n0\r\n\r\n", b"3\r\nabc\n0\r\n\r\n", b"3\r\nabc\r0\r\n\r\n"):
            with self.subTest(wire=wire):
                decoder = self.decoder(b"Transfer-Encoding: chunked")
                with self.assertRaises(UpstreamProtocolError):
                    decoder.feed(wire)

    def test_malformed_trailers_are_refused(self) -> None:
        """Trailer lines must be well-formed fields too, although they are not relayed."""
        for trailer in (b"X-Trailer: a\x00b", b"X-Trailer: a\nb", b"X Trailer: 1", b"NoColon",
                        b" folded", b"X-Trailer: " + SECRET + b"\x7f"):
            with self.subTest(trailer=trailer):
                decoder = self.decoder(b"Transfer-Encoding: chunked")
                with self.assertRaises(UpstreamProtocolError) as caught:
                    decoder.feed(b"1\r\na\r\n0\r\n" + trailer + b"\r\n\r\n")
                self.assertNotIn(SECRET.decode(), str(caught.exception))

    def test_oversized_chunk_line_is_refused(self) -> None:
        """A chunk size line that never ends is refused instead of being buffered forever."""
        decoder = self.decoder(b"Transfer-Encoding: chunked")
        with self.assertRaises(UpstreamProtocolError):
            for _ in range(10):
                decoder.feed(b"1;" + b"x" * 500)
