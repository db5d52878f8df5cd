"""Cutting a streamed answer into what its observers see: NDJSON lines or SSE events.

Both framers take the bytes as they come off the connection, split anywhere, and give back
whole units without their terminator, keeping the terminator so an unchanged unit is relayed
byte for byte.
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

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The lines ``data`` completes, each as ``(line, terminator)``.

        Raises:
            FramingError: a line, ended or not, is longer than the limit (however the
                answer was split into reads).
        """
        if b"\n" not in data:
            self._size += len(data)
            if self._size > self._limit:
                raise FramingError(f"a line longer than {self._limit} bytes")
            self._pieces.append(data)
            return []
        if self._pieces:
            self._pieces.append(data)
            data = b"".join(self._pieces)
        lines = data.split(b"\n")
        rest = lines.pop()
        self._pieces = [rest] if rest else []
        self._size = len(rest)
        if max(map(len, lines), default=0) > self._limit or self._size > self._limit:
            raise FramingError(f"a line longer than {self._limit} bytes")
        return [(line, b"\n") for line in lines]

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

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The events ``data`` completes, each as ``(event, blank line)``.

        Raises:
            FramingError: an event, ended or not, is longer than the limit (however the
                answer was split into reads).
        """
        if self._partial:
            data = self._partial + data
        events = []
        start = 0
        for match in _EVENT_END.finditer(data):
            events.append((data[start:match.start()], match.group()))
            start = match.end()
        rest = data[start:]
        # A "\r" at the very end may be the first half of "\r\n": it waits for the next read.
        self._partial = rest
        # The line ends at the end of an unfinished event may be the start of its blank line:
        # they do not count towards its length.
        longest = max((len(event) for event, _ in events), default=0)
        if longest > self._limit or len(rest.rstrip(b"\r\n")) > self._limit:
            raise FramingError(f"an event longer than {self._limit} bytes")
        return events

    def flush(self) -> list[tuple[bytes, bytes]]:
        """A last event the answer did not end with a blank line (or the line ends after the
        last one, which are relayed as they are but shown to no hook)."""
        rest, self._partial = self._partial, b""
        return [(rest, b"")] if rest else []
