"""Cutting a streamed answer into what its observers see: NDJSON lines or SSE events.

Both framers take the bytes as they come off the connection, split anywhere, and give back
whole units without their terminator, keeping the terminator so an unchanged unit is relayed
byte for byte.
"""

from __future__ import annotations

import re

__all__ = ["EventFramer", "FramingError", "LineFramer", "framing_of"]

_EVENT_END = re.compile(rb"\r\n\r\n|\n\n|\r\r")
"""The blank line that ends an SSE event, with each of the three line ends SSE allows."""


class FramingError(Exception):
    """A unit (line or event) grew past the limit without ending."""


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
        self._partial = b""

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        """The lines ``data`` completes, each as ``(line, terminator)``.

        Raises:
            FramingError: the unfinished line is longer than the limit.
        """
        if self._partial:
            data = self._partial + data
        lines = data.split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) > self._limit:
            raise FramingError(f"a line longer than {self._limit} bytes")
        return [(line, b"\n") for line in lines]

    def flush(self) -> list[tuple[bytes, bytes]]:
        """A last line the answer did not end with a newline."""
        rest, self._partial = self._partial, b""
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
            FramingError: the unfinished event is longer than the limit.
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
        if len(rest) > self._limit:
            raise FramingError(f"an event longer than {self._limit} bytes")
        return events

    def flush(self) -> list[tuple[bytes, bytes]]:
        """A last event the answer did not end with a blank line."""
        rest, self._partial = self._partial, b""
        return [(rest, b"")] if rest.strip(b"\r\n") else []
