"""The head scanner: finding the end of a head that arrives in pieces, refusing a bad one early."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.http.errors import BadRequest
from runnergw.http.head import HeadLimits
from runnergw.http.scan import HeadScanner, skip_empty_lines

__all__ = ["EmptyLineTests", "FindEndTests", "PartialErrorTests"]

_LIMITS = HeadLimits(max_line=64, max_fields=3, max_bytes=200)


def _grow(scanner: HeadScanner, *pieces: bytes) -> tuple[bytes, BadRequest | None]:
    """Feed a head growing by ``pieces``; the buffer and the last verdict (None, or an error)."""
    buffer: bytes = b""
    verdict: BadRequest | None = None
    for piece in pieces:
        buffer += piece
        verdict = scanner.partial_error(buffer)
        if verdict is not None:
            break
    return buffer, verdict


class FindEndTests(SynchronousTestCase):
    """Where the head ends."""

    def test_end_split_across_pieces(self) -> None:
        """An empty line whose CRLFCRLF is cut in two is found once its last byte is in."""
        scanner = HeadScanner(_LIMITS)
        buffer, verdict = _grow(scanner, b"GET / HTTP/1.1\r\nHost: gw\r\n\r")
        self.assertIsNone(verdict)
        self.assertEqual(scanner.find_end(buffer), -1)
        self.assertEqual(scanner.find_end(buffer + b"\nbody"), len(buffer) - 3)

    def test_reset_starts_a_new_head(self) -> None:
        """After ``reset`` the next head's first line is a request line again (414, not 431)."""
        scanner = HeadScanner(_LIMITS)
        _, verdict = _grow(scanner, b"GET / HTTP/1.1\r\nHost: gw\r\n")
        self.assertIsNone(verdict)
        scanner.reset()
        _, verdict = _grow(scanner, b"GET /" + b"a" * 70 + b" HTTP/1.1\r\n")
        self.assertEqual(verdict and verdict.status, 414)


class PartialErrorTests(SynchronousTestCase):
    """What an unfinished head is refused for."""

    def status(self, *pieces: bytes) -> int | None:
        """The status the scanner refuses the growing head with, or None."""
        _, verdict = _grow(HeadScanner(_LIMITS), *pieces)
        return None if verdict is None else verdict.status

    def test_well_formed_so_far(self) -> None:
        """A good head cut anywhere, even between CR and LF, is not refused."""
        self.assertIsNone(self.status(b"GET / HT", b"TP/1.1\r", b"\nHost: g", b"w\r"))

    def test_long_request_line(self) -> None:
        """A request line over the limit is 414, with or without its CRLF."""
        self.assertEqual(self.status(b"GET /" + b"a" * 70), 414)
        self.assertEqual(self.status(b"GET /" + b"a" * 70 + b" HTTP/1.1\r\n"), 414)

    def test_long_field(self) -> None:
        """A field line over the limit is 431, with or without its CRLF."""
        self.assertEqual(self.status(b"GET / HTTP/1.1\r\n", b"X: " + b"a" * 70), 431)
        self.assertEqual(self.status(b"GET / HTTP/1.1\r\n", b"X: " + b"a" * 70 + b"\r\n"), 431)

    def test_bare_line_ends(self) -> None:
        """A bare LF or CR, in a complete line or the one arriving, is 400."""
        self.assertEqual(self.status(b"GET / HTTP/1.1\nHost: gw\r\n"), 400)
        self.assertEqual(self.status(b"GET / HTTP/1.1\r\nHost: gw\rX"), 400)
        self.assertEqual(self.status(b"GET / HTTP/1.1\r\n", b"Host: gw\n"), 400)

    def test_too_many_fields(self) -> None:
        """More complete field lines than allowed is 431 before the head ends."""
        self.assertIsNone(self.status(b"GET / HTTP/1.1\r\n", b"A: 1\r\nB: 2\r\nC: 3\r\n"))
        self.assertEqual(self.status(b"GET / HTTP/1.1\r\n", b"A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"),
                         431)

    def test_block_too_large(self) -> None:
        """A head larger than allowed is 431 even when every line is within its limit."""
        self.assertEqual(self.status(b"GET / HTTP/1.1\r\n", b"A: " + b"a" * 60 + b"\r\n",
                                     b"B: " + b"b" * 60 + b"\r\n", b"C: " + b"c" * 60 + b"\r\n"),
                         431)


class EmptyLineTests(SynchronousTestCase):
    """What may come before a request line."""

    def test_crlf_lines_skipped(self) -> None:
        """Any number of CRLF empty lines are skipped; a head without them is left alone."""
        self.assertEqual(skip_empty_lines(b"\r\n\r\nGET"), b"GET")
        self.assertEqual(skip_empty_lines(b"\r\n" * 1000), b"")
        self.assertEqual(skip_empty_lines(b"GET / HTTP/1.1\r\n"), b"GET / HTTP/1.1\r\n")

    def test_cr_awaiting_its_lf(self) -> None:
        """A CR at the very end is kept: its LF may be on the way."""
        self.assertEqual(skip_empty_lines(b"\r"), b"\r")
        self.assertEqual(skip_empty_lines(b"\r\n\r"), b"\r")

    def test_bare_cr_or_lf(self) -> None:
        """A bare CR or LF anywhere before the request line is 400."""
        for data in (b"\n", b"\nGET", b"\rGET", b"\r\r\n", b"\r\n\n\r\n", b"\n\r", b"\r\n\rG"):
            with self.subTest(data=data):
                error = self.assertRaises(BadRequest, skip_empty_lines, data)
                self.assertEqual(error.status, 400)
