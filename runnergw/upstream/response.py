"""Parse a runner's response head and choose how its body is framed."""

from __future__ import annotations

import attrs

from runnergw.http.body import BodyDecoder, ChunkedDecoder, FixedLengthDecoder
from runnergw.http.headers import Headers

__all__ = ["ResponseHead", "UpstreamProtocolError", "body_decoder", "parse_response_head"]

MAX_HEAD_BYTES = 65536


class UpstreamProtocolError(Exception):
    """The runner answered something that is not acceptable HTTP/1.1."""


@attrs.frozen
class ResponseHead:
    """Status and headers of a runner's response, with its framing decided."""

    status: int
    headers: Headers
    """End-to-end headers only: hop-by-hop ones and those named in ``Connection`` removed."""
    content_length: int | None
    """Declared length (for HEAD: what a GET would carry); ``None`` when chunked or
    delimited by the connection closing."""
    chunked: bool
    keep_alive: bool


class _UntilClose:
    """A body that ends when the runner closes the connection."""

    done = False

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        return [data], b""


def parse_response_head(block: bytes, method: str) -> ResponseHead:
    """Parse the status line and fields (``block`` excludes the final CRLFCRLF).

    Raises:
        UpstreamProtocolError: a malformed head, or ambiguous framing.
    """
    lines = block.split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or status_line[0] not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise UpstreamProtocolError("malformed status line")
    if not status_line[1].isdigit() or len(status_line[1]) != 3:
        raise UpstreamProtocolError("malformed status code")
    status = int(status_line[1])
    fields = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise UpstreamProtocolError("malformed header field")
        fields.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    headers = Headers(fields)
    tokens = headers.connection_tokens()
    http11 = status_line[0] == b"HTTP/1.1"
    keep_alive = ("close" not in tokens) if http11 else ("keep-alive" in tokens)
    encodings = headers.get_all("transfer-encoding")
    lengths = headers.get_all("content-length")
    if lengths and (len(set(lengths)) != 1 or not lengths[0].isdigit()):
        raise UpstreamProtocolError("malformed Content-Length")
    content_length = int(lengths[0]) if lengths else None
    chunked = False
    if not _has_no_body(status, method):
        if encodings:
            if encodings[-1].strip().lower() != "chunked" or lengths:
                raise UpstreamProtocolError("unsupported or ambiguous Transfer-Encoding")
            chunked = True
        elif content_length is None:
            keep_alive = False
    return ResponseHead(status, headers.without_hop_by_hop(), content_length, chunked,
                        keep_alive)


def _has_no_body(status: int, method: str) -> bool:
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


def body_decoder(head: ResponseHead, method: str) -> BodyDecoder:
    """The decoder for the body that follows ``head``."""
    if _has_no_body(head.status, method):
        return FixedLengthDecoder(0)
    if head.chunked:
        return ChunkedDecoder()
    if head.content_length is not None:
        return FixedLengthDecoder(head.content_length)
    return _UntilClose()
