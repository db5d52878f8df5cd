"""Find the end of a request head in a growing buffer, and refuse a bad one before its end.

A head may arrive in any number of pieces. Each complete line is checked once, so that a head
trickling in a byte at a time costs linear work, not quadratic; and a head that already breaks
a limit or the line syntax is refused at once instead of holding the connection until the
header deadline.
"""

from __future__ import annotations

from runnergw.http.errors import BadRequest
from runnergw.http.head import HeadLimits

__all__ = ["HeadScanner", "skip_empty_lines"]


def skip_empty_lines(buffer: bytes) -> bytes:
    """``buffer`` without the empty lines that may come before a request line.

    RFC 9112 section 2.2 lets a server ignore empty lines (CRLF) there; a bare CR or a bare LF
    is not one, and other parsers may read it as the end of a line or as part of the next.
    A CR alone at the very end is kept: its LF may be on the way.

    Raises:
        BadRequest: a bare CR or LF before the request line.
    """
    if buffer[:1] not in (b"\r", b"\n"):
        return buffer
    rest = buffer.lstrip(b"\r\n")
    blank = len(buffer) - len(rest)
    pairs = blank // 2
    if buffer[: 2 * pairs] == b"\r\n" * pairs:
        if blank == 2 * pairs:
            return rest
        if not rest and buffer[-1:] == b"\r":
            return b"\r"
    raise BadRequest(400, "bare CR or LF before the request line")


class HeadScanner:
    """The state of one unfinished request head; ``reset`` once a head is complete."""

    __slots__ = ("_limits", "_scanned", "_line_ends")

    def __init__(self, limits: HeadLimits) -> None:
        self._limits = limits
        self._scanned = 0
        """Bytes at the start of the unfinished head already checked: whole lines with CRLF."""
        self._line_ends = 0
        """Lines ended by CRLF within those bytes (request line and fields)."""

    def reset(self) -> None:
        """Forget the head scanned so far (it was complete, or refused)."""
        self._scanned = self._line_ends = 0

    def find_end(self, buffer: bytes) -> int:
        """Where the empty line ending the head starts in ``buffer`` (the head begins at
        offset 0), or -1. None is among the lines already checked, so they are not searched
        again."""
        return buffer.find(b"\r\n\r\n", max(0, self._scanned - 2))

    def partial_error(self, buffer: bytes) -> BadRequest | None:
        """What is wrong with the unfinished head ``buffer`` so far, if anything.

        ``buffer`` must be the same head as at the previous call, grown at its end.
        """
        limits = self._limits
        start = self._scanned
        cut = buffer.rfind(b"\r\n", start)
        if cut >= 0:
            lines = buffer[start:cut].split(b"\r\n")
            if start == 0 and len(lines[0]) > limits.max_line:
                return BadRequest(414, "request line too long")
            if max(map(len, lines)) > limits.max_line:
                return BadRequest(431, "header field too long")
            if any(b"\n" in line or b"\r" in line for line in lines):
                return BadRequest(400, "bare CR or LF in the request head")
            self._line_ends += len(lines)
            self._scanned = start = cut + 2
        # The line being received may end with the CR of a CRLF whose LF is on its way.
        partial = buffer[start:].removesuffix(b"\r")
        if len(partial) > limits.max_line:
            if start == 0:
                return BadRequest(414, "request line too long")
            return BadRequest(431, "header field too long")
        if b"\n" in partial or b"\r" in partial:
            return BadRequest(400, "bare CR or LF in the request head")
        if len(buffer) > limits.max_bytes:
            return BadRequest(431, "request header block too large")
        if self._line_ends - 1 > limits.max_fields:
            return BadRequest(431, "too many header fields")
        return None
