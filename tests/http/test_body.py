"""Request body decoders: fixed length and chunked, fed whole and in pieces."""

from __future__ import annotations

import random

from twisted.trial.unittest import SynchronousTestCase

from runnergw.http.body import ChunkedDecoder, FixedLengthDecoder
from runnergw.http.errors import BadRequest
from tests.helpers.body_pieces import decode_in_pieces

__all__ = ["ChunkedTests", "FixedLengthTests"]


class FixedLengthTests(SynchronousTestCase):
    """``Content-Length`` bodies."""

    def test_exact(self) -> None:
        """The declared number of bytes is the body; the rest belongs to the next request."""
        decoder = FixedLengthDecoder(5)
        self.assertFalse(decoder.done)
        self.assertEqual(decoder.feed(b"hel"), ([b"hel"], b""))
        self.assertEqual(decoder.feed(b"loGET /"), ([b"lo"], b"GET /"))
        self.assertTrue(decoder.done)

    def test_zero(self) -> None:
        """A zero-length body is done before any byte."""
        self.assertTrue(FixedLengthDecoder(0).done)

    def test_boundary(self) -> None:
        """A piece that ends exactly at the end of the body leaves nothing over."""
        decoder = FixedLengthDecoder(3)
        self.assertEqual(decoder.feed(b"abc"), ([b"abc"], b""))
        self.assertTrue(decoder.done)


class ChunkedTests(SynchronousTestCase):
    """``Transfer-Encoding: chunked`` bodies."""

    def decode(self, data: bytes) -> tuple[bytes, bytes]:
        """Decode ``data`` in one piece; the body must be complete."""
        decoder = ChunkedDecoder()
        body, after = decode_in_pieces(decoder, [data])
        self.assertTrue(decoder.done)
        return body, after

    def assertMalformed(self, *pieces: bytes) -> BadRequest:
        """Feeding the pieces (in order) raises a 400."""
        decoder = ChunkedDecoder()
        error = self.assertRaises(BadRequest, decode_in_pieces, decoder, list(pieces))
        self.assertEqual(error.status, 400)
        return error

    def test_chunks(self) -> None:
        """Chunks are joined and the bytes after the last chunk are handed back."""
        body, after = self.decode(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\nGET / HTTP/1.1")
        self.assertEqual((body, after), (b"hello world", b"GET / HTTP/1.1"))

    def test_upper_and_lower_hex(self) -> None:
        """Hex sizes are case-insensitive and may have leading zeros."""
        body, _ = self.decode(b"A\r\n0123456789\r\n00b\r\n0123456789a\r\n0\r\n\r\n")
        self.assertEqual(len(body), 21)

    def test_extensions_and_trailers(self) -> None:
        """Chunk extensions and trailer fields are read and discarded."""
        body, after = self.decode(b"3;name=value\r\nabc\r\n3; x\r\ndef\r\n0;end\r\n"
                                  b"X-Trailer: 1\r\nX-Other: 2\r\n\r\n")
        self.assertEqual((body, after), (b"abcdef", b""))

    def test_blank_after_the_size_refused(self) -> None:
        """A blank after a chunk size (``5 `` or ``5 ;x``) is refused: RFC 9112 forbids the
        first, Go's parser the second, and a proxy could frame such a body otherwise."""
        for line in (b"3 \r\n", b"3 ;x\r\n", b"3\t;x\r\n"):
            with self.subTest(line=line):
                self.assertRaises(BadRequest, ChunkedDecoder().feed, line + b"abc\r\n0\r\n\r\n")

    def test_empty_body(self) -> None:
        """``0\\r\\n\\r\\n`` is an empty body."""
        self.assertEqual(self.decode(b"0\r\n\r\n"), (b"", b""))

    def test_byte_by_byte(self) -> None:
        """The same body comes out when the bytes arrive one at a time."""
        data = b"5;a=b\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nT: 1\r\n\r\nNEXT"
        decoder = ChunkedDecoder()
        body, after = decode_in_pieces(decoder, [data[i : i + 1] for i in range(len(data))])
        self.assertEqual((body, after), (b"hello world", b"NEXT"))

    def test_random_splits(self) -> None:
        """Random splits of a long chunked body always decode to the same bytes."""
        rng = random.Random(20240611)
        payload = bytes(rng.randrange(256) for _ in range(5000))
        encoded, offset = b"", 0
        while offset < len(payload):
            size = rng.randrange(1, 700)
            piece = payload[offset : offset + size]
            encoded += b"%x;n=%d\r\n%s\r\n" % (len(piece), offset, piece)
            offset += size
        encoded += b"0\r\nX-Sum: 1\r\n\r\nNEXT REQUEST"
        for _ in range(50):
            cuts = sorted(rng.sample(range(1, len(encoded)), rng.randrange(1, 60)))
            pieces = [encoded[a:b] for a, b in zip([0, *cuts], [*cuts, len(encoded)], strict=True)]
            decoder = ChunkedDecoder()
            self.assertEqual(decode_in_pieces(decoder, pieces), (payload, b"NEXT REQUEST"))
            self.assertTrue(decoder.done)

    def test_hex_prefix(self) -> None:
        """``0x10`` is not a chunk size."""
        self.assertMalformed(b"0x10\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n")

    def test_negative(self) -> None:
        """``-1`` is not a chunk size."""
        self.assertMalformed(b"-1\r\na\r\n0\r\n\r\n")

    def test_plus_sign(self) -> None:
        """``+5`` is not a chunk size."""
        self.assertMalformed(b"+5\r\nhello\r\n0\r\n\r\n")

    def test_underscore(self) -> None:
        """``1_0`` (a Python literal) is not a chunk size."""
        self.assertMalformed(b"1_0\r\n" + b"a" * 16 + b"\r\n0\r\n\r\n")

    def test_empty_size(self) -> None:
        """An empty size line is refused."""
        self.assertMalformed(b"\r\nhello\r\n0\r\n\r\n")

    def test_not_hex(self) -> None:
        """Non-hex sizes are refused."""
        self.assertMalformed(b"g\r\nhello\r\n0\r\n\r\n")
        self.assertMalformed(b"5z\r\nhello\r\n0\r\n\r\n")

    def test_size_with_odd_whitespace(self) -> None:
        """A size preceded by space, or with vertical tab or form feed around it, is refused."""
        for line in (b" 5", b"\x0b5", b"5\x0c", b"\x0c5;x"):
            with self.subTest(line=line):
                self.assertMalformed(line + b"\r\nhello\r\n0\r\n\r\n")

    def test_size_too_many_digits(self) -> None:
        """A size of more than 15 hex digits is refused (no huge allocations)."""
        self.assertMalformed(b"1" + b"0" * 15 + b"\r\n")

    def test_control_characters_in_extension(self) -> None:
        """A bare LF or NUL inside a chunk extension is refused."""
        self.assertMalformed(b"5;a\nb\r\nhello\r\n0\r\n\r\n")
        self.assertMalformed(b"5;a\x00b\r\nhello\r\n0\r\n\r\n")

    def test_missing_crlf_after_data(self) -> None:
        """Data longer than its size (no CRLF where one must be) is refused."""
        self.assertMalformed(b"5\r\nhelloXX0\r\n\r\n")
        self.assertMalformed(b"5\r\nhello0\r\n\r\n")

    def test_missing_crlf_after_data_in_pieces(self) -> None:
        """The missing CRLF is noticed as soon as two wrong bytes are in."""
        decoder = ChunkedDecoder()
        self.assertEqual(decoder.feed(b"5\r\nhello"), ([b"hello"], b""))
        self.assertEqual(decoder.feed(b"X"), ([], b""))
        error = self.assertRaises(BadRequest, decoder.feed, b"Y")
        self.assertEqual(error.status, 400)

    def test_size_line_too_long(self) -> None:
        """A size line over 1024 bytes is refused before its CRLF arrives."""
        self.assertMalformed(b"5;" + b"x" * 1100)
        self.assertMalformed(b"5;" + b"x" * 1100 + b"\r\nhello\r\n0\r\n\r\n")

    def test_size_line_long_in_pieces(self) -> None:
        """A long size line fed in small pieces is refused once it passes the limit."""
        decoder = ChunkedDecoder()
        for _ in range(64):
            decoder.feed(b"5;" + b"x" * 14)
        self.assertRaises(BadRequest, decoder.feed, b"x" * 20)

    def test_trailers_too_long(self) -> None:
        """Trailers over 16 KiB in total are refused."""
        trailers = b"".join(b"X-%d: %s\r\n" % (n, b"a" * 1000) for n in range(20))
        self.assertMalformed(b"0\r\n" + trailers + b"\r\n")

    def test_trailer_line_too_long_without_crlf(self) -> None:
        """A single endless trailer line is refused without waiting for its end."""
        self.assertMalformed(b"0\r\nX-A: " + b"a" * 17000)

    def test_trailer_fields_checked(self) -> None:
        """Trailer lines must be ``name: value`` fields without folding or control characters."""
        for line in (b"garbage", b": v", b"X-A : 1", b" folded", b"\tfolded", b"X-A: a\x00b",
                     b"X-A: a\x7f", b"X (A): 1"):
            with self.subTest(line=line):
                self.assertMalformed(b"0\r\n" + line + b"\r\n\r\n")

    def test_request_line_in_trailers(self) -> None:
        """A request line after the last chunk is not swallowed as a trailer: 400."""
        self.assertMalformed(b"0\r\nGET /smuggled HTTP/1.1\r\nHost: gw\r\n\r\n")

    def test_bare_lf_in_trailers(self) -> None:
        """A bare LF in the trailer section, as a line end or as the empty line, is refused."""
        self.assertMalformed(b"0\r\nX-A: 1\n\r\n")
        self.assertMalformed(b"0\r\n\nGET / HTTP/1.1\r\nHost: gw\r\n\r\n")
        self.assertMalformed(b"0\r\nX-A: 1\r\n\n\r\n")

    def test_bare_cr_in_trailers(self) -> None:
        """A bare CR in a trailer line is refused."""
        self.assertMalformed(b"0\r\nX-A: 1\rX-B: 2\r\n\r\n")

    def test_bare_lf_noticed_before_crlf(self) -> None:
        """A bare LF in a trailer or size line is refused at once, not when a CRLF comes."""
        for data in (b"0\r\nX-A: 1\nX", b"0\r\n\n", b"5\nhello", b"5\rX"):
            with self.subTest(data=data):
                decoder = ChunkedDecoder()
                error = self.assertRaises(BadRequest, decoder.feed, data)
                self.assertEqual(error.status, 400)

    def test_cr_awaiting_lf_in_trailers(self) -> None:
        """A trailer line cut between its CR and LF is fine."""
        decoder = ChunkedDecoder()
        body, after = decode_in_pieces(decoder, [b"0\r\nX-A: 1\r", b"\n\r", b"\nNEXT"])
        self.assertEqual((body, after), (b"", b"NEXT"))
        self.assertTrue(decoder.done)

    def test_trailer_section_bounded_while_arriving(self) -> None:
        """Trailer bytes already read count towards the limit of an unfinished line."""
        decoder = ChunkedDecoder()
        decoder.feed(b"0\r\n" + b"".join(b"X-%d: %s\r\n" % (n, b"a" * 1000) for n in range(15)))
        decoder.feed(b"X-Last: " + b"a" * 500)
        error = self.assertRaises(BadRequest, decoder.feed, b"a" * 1000)
        self.assertEqual(error.status, 400)
