"""Decode a request body as it arrives: a fixed length or HTTP/1.1 chunked coding."""

from __future__ import annotations

import re
from typing import Protocol

from runnergw.http.errors import BadRequest

__all__ = ["BodyDecoder", "ChunkedDecoder", "FixedLengthDecoder"]

_MAX_CHUNK_LINE = 1024
_MAX_TRAILERS = 16384
_SIZE_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})(?:;[^\x00-\x08\x0a-\x1f\x7f]*)?")
"""A chunk size, then its extensions. No blank after the size: RFC 9112 forbids one before
the line end and Go's parser one before ``;``, so either could frame the body otherwise."""
"""Hex digits only (no sign, prefix, underscore or leading space), then optional extensions
without control characters; ``int()`` alone would accept far more."""
_TRAILER_FIELD = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+:[^\x00-\x08\x0a-\x1f\x7f]*")
"""A trailer field line, as a header field line: a token, a colon, a value without control
characters but HTAB (so no bare CR or LF, no folding, no whitespace before the colon)."""


class BodyDecoder(Protocol):
    """Turns received bytes into body pieces."""

    done: bool

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """Consume ``data``; return body pieces and, once finished, the bytes after the body."""


class FixedLengthDecoder:
    """A body of ``Content-Length`` bytes."""

    def __init__(self, length: int) -> None:
        self.remaining = length
        self.done = length == 0

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """See ``BodyDecoder.feed``."""
        if len(data) < self.remaining:
            self.remaining -= len(data)
            return [data], b""
        piece, rest = data[: self.remaining], data[self.remaining :]
        self.remaining = 0
        self.done = True
        return ([piece] if piece else []), rest


class ChunkedDecoder:
    """``Transfer-Encoding: chunked`` with bounded size lines and trailers.

    The trailer section is read as field lines, each ended by CRLF, up to an empty line, and
    then discarded (never forwarded). Anything else there (a bare LF, a request line) is
    refused rather than skipped: a proxy in front may read it as the next request.
    """

    def __init__(self) -> None:
        self.done = False
        self._buffer = b""
        self._state = "size"
        self._remaining = 0
        self._trailer_bytes = 0

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        """See ``BodyDecoder.feed``."""
        buffer = self._buffer + data if self._buffer else data
        self._buffer = b""
        pieces: list[bytes] = []
        # An offset into the buffer rather than slicing off what is consumed: slicing copies
        # the rest each time, quadratic in the number of chunks in one read.
        position, end = 0, len(buffer)
        while position < end and not self.done:
            if self._state == "data":
                take = min(self._remaining, end - position)
                pieces.append(buffer[position : position + take])
                position += take
                self._remaining -= take
                if self._remaining == 0:
                    self._state = "crlf"
                continue
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                self._buffer = buffer[position:]
                self._check_partial(self._buffer)
                break
            self._line(buffer[position:line_end])
            position = line_end + 2
        return pieces, (buffer[position:] if self.done else b"")

    def _check_partial(self, buffer: bytes) -> None:
        """Refuse an unfinished line that is already wrong, without waiting for its end."""
        if self._state == "crlf":
            if len(buffer) >= 2:
                raise BadRequest(400, "malformed chunked body")
            return
        if self._state == "trailer":
            if self._trailer_bytes + len(buffer) > _MAX_TRAILERS:
                raise BadRequest(400, "trailers too long")
        elif len(buffer) > _MAX_CHUNK_LINE:
            raise BadRequest(400, "chunk size line too long")
        # No CRLF in the buffer: a LF, or a CR but as its last byte, is a bare one.
        if b"\n" in buffer or b"\r" in buffer[:-1]:
            raise BadRequest(400, "bare CR or LF in a chunked body")

    def _line(self, line: bytes) -> None:
        if self._state == "crlf":
            if line:
                raise BadRequest(400, "malformed chunked body")
            self._state = "size"
        elif self._state == "size":
            match = _SIZE_LINE.fullmatch(line) if len(line) <= _MAX_CHUNK_LINE else None
            if match is None:
                raise BadRequest(400, "malformed chunk size")
            size = int(match.group(1), 16)
            self._remaining = size
            self._state = "data" if size else "trailer"
        else:
            self._trailer_bytes += len(line) + 2
            if self._trailer_bytes > _MAX_TRAILERS:
                raise BadRequest(400, "trailers too long")
            if not line:
                self.done = True
            elif not _TRAILER_FIELD.fullmatch(line):
                raise BadRequest(400, "malformed trailer field")
