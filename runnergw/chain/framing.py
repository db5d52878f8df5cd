"""Cutting a streamed answer into what its observers see: NDJSON lines or SSE events.

Both framers take the bytes as they come off the connection, split anywhere, and give back
whole units without their terminator, keeping the terminator so an unchanged unit is relayed
byte for byte. ``take`` also gives the bytes of those units as they came (the read itself when
it held whole units only and nothing was carried over): when no hook changes any of them, they
are relayed in one write, never taken apart and put together again.
"""

from __future__ import annotations

import re

__all__ = ["EventFramer", "FramingError", "LineFramer", "framing_of"]

_EVENT_END = re.compile(rb"\r\n\r\n|\n\r\n|\r\n\n|\n\n|\r\r")
"""The blank line that ends an SSE event, with each of the three line ends SSE allows."""


class FramingError(Exception):
    """A unit (line or event) is longer than the limit, ended or not."""


def framing_of(content_type: str | None) -> str:
    """How an answer of this media type is observed: ``ndjson``, ``sse``, ``json`` or
    ``bytes``."""
    if not content_type:
        return "bytes"
    media = content_type.partition(";")[0].strip(" \t").lower()
    if media in ("application/x-ndjson", "application/ndjson", "application/jsonl",
                 "application/x-jsonlines"):
        return "ndjson"
    if media == "text/event-stream":
        return "sse"
    if media == "application/json" or (media.startswith("application/")
                                       and media.endswith("+json")):
        return "json"
    return "bytes"


class LineFramer:
    """NDJSON: one unit per ``\\n``-ended line (a ``\\r`` before it stays in the line)."""

    terminator = b"\n"

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._pieces: list[bytes] = []
        """The unfinished line, as it came (joined once it ends: a long line in many small
        reads costs linear work, not quadratic)."""
        self._size = 0

    def take(self, data: bytes) -> tuple[bytes, list[bytes], None]:
        """The lines ``data`` completes: their bytes as they came (the unfinished line
        carried before them included, their newlines too), the lines without their newline,
        and None (every line ends with the terminator). When nothing carried over and
        ``data`` ends with a newline, the bytes are ``data`` itself.

        Raises:
            FramingError: a line, ended or not, is longer than the limit (however the
                answer was split into reads).
        """
        pieces = self._pieces
        limit = self._limit
        if data[-1:] == b"\n" and not pieces:
            # Whole lines and nothing carried over: the common case, as Ollama writes a line
            # at a time.
            lines = data.split(b"\n")
            lines.pop()  # the empty bytes after the last newline
            if len(data) > limit and max(map(len, lines)) > limit:
                raise FramingError(f"a line longer than {limit} bytes")
            return data, lines, None
        cut = data.rfind(b"\n") + 1
        if not cut:
            self._size += len(data)
            if self._size > limit:
                raise FramingError(f"a line longer than {limit} bytes")
            pieces.append(data)
            return b"", [], None
        if cut == len(data):
            whole, rest = data, b""
        else:
            whole, rest = data[:cut], data[cut:]
        if pieces:
            pieces.append(whole)
            whole = b"".join(pieces)
            pieces.clear()
        if rest:
            pieces.append(rest)
        self._size = len(rest)
        lines = whole.split(b"\n")
        lines.pop()
        if (len(whole) > limit and max(map(len, lines)) > limit) or self._size > limit:
            raise FramingError(f"a line longer than {limit} bytes")
        return whole, lines, None

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The lines ``data`` completes, each as ``(line, terminator)``.

        Raises:
            FramingError: as ``take``.
        """
        return [(line, b"\n") for line in self.take(data)[1]]

    def flush(self) -> list[tuple[bytes, bytes]]:
        """A last line the answer did not end with a newline."""
        rest = b"".join(self._pieces)
        self._pieces, self._size = [], 0
        return [(rest, b"")] if rest else []


class EventFramer:
    """Server-sent events: one unit per event, ended by a blank line."""

    terminator = b"\n\n"

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._partial = b""

    def take(self, data: bytes) -> tuple[bytes, list[bytes], list[bytes]]:
        """The events ``data`` completes: their bytes as they came (what was carried before
        them included), the events without their blank line, and each one's blank line.
        When nothing carried over and ``data`` ends with a blank line, the bytes are
        ``data`` itself.

        Raises:
            FramingError: an event, ended or not, is longer than the limit (however the
                answer was split into reads).
        """
        if self._partial:
            data = self._partial + data
        events = []
        ends = []
        start = 0
        for match in _EVENT_END.finditer(data):
            events.append(data[start:match.start()])
            ends.append(match.group())
            start = match.end()
        if start == len(data):
            whole, rest = data, b""
        else:
            whole, rest = data[:start], data[start:]
        # A "\r" at the very end may be the first half of "\r\n": it waits for the next read.
        self._partial = rest
        # The line ends at the end of an unfinished event may be the start of its blank line:
        # they do not count towards its length.
        longest = max(map(len, events), default=0)
        if longest > self._limit or len(rest.rstrip(b"\r\n")) > self._limit:
            raise FramingError(f"an event longer than {self._limit} bytes")
        return whole, events, ends

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The events ``data`` completes, each as ``(event, blank line)``.

        Raises:
            FramingError: as ``take``.
        """
        _, events, ends = self.take(data)
        return list(zip(events, ends, strict=True))

    def flush(self) -> list[tuple[bytes, bytes]]:
        """A last event the answer did not end with a blank line (or the line ends after the
        last one, which are relayed as they are but shown to no hook)."""
        rest, self._partial = self._partial, b""
        return [(rest, b"")] if rest else []
