"""Parse a runner's response head strictly and choose how its body is framed.

A runner's answer is checked as strictly as a client's request: whatever could split the
client's response, be framed two ways or crash the parser is refused as invalid
(``UpstreamProtocolError``), never repaired. Error messages may name a header field, never
quote its value (it may hold a secret).
"""

from __future__ import annotations

import re

import attrs

from runnergw.http.body import BodyDecoder, ChunkedDecoder, FixedLengthDecoder
from runnergw.http.errors import BadRequest
from runnergw.http.headers import Headers

__all__ = ["ResponseHead", "UpstreamProtocolError", "body_decoder", "parse_response_head"]

MAX_HEAD_BYTES = 65536

_STATUS_LINE = re.compile(rb"HTTP/1\.([01]) ([0-9]{3})(?: [^\x00-\x08\x0a-\x1f\x7f]*)?")
"""HTTP/1.0 or HTTP/1.1, three ASCII digits, then an optional reason phrase without control
characters (a missing space before an empty reason is tolerated, as most clients do)."""
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
"""Control characters other than HTAB: never allowed in a field value (CR, LF and NUL
included)."""
_DIGITS = re.compile(r"[0-9]{1,18}")
"""A Content-Length (RFC 9110 ``1*DIGIT``): ASCII digits only, unlike ``str.isdigit()``."""
_BLANKS = " \t"
"""What surrounds a field value or a list element (never ``str.strip()``'s \\xa0 or \\x85)."""


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


class _ResponseChunkedDecoder(ChunkedDecoder):
    """The chunked coding of a response: errors are the runner's, and trailer lines, although
    discarded, must be well-formed fields as header lines must."""

    def feed(self, data: bytes) -> tuple[list[bytes], bytes]:
        try:
            return super().feed(data)
        except BadRequest as e:
            raise UpstreamProtocolError(f"malformed chunked body: {e.message}") from None

    def _line(self, line: bytes) -> None:
        if self._state == "trailer" and line:
            _parse_field(line, "trailer")
        super()._line(line)


def parse_response_head(block: bytes, method: str) -> ResponseHead:
    """Parse the status line and fields (``block`` excludes the final CRLFCRLF).

    Raises:
        UpstreamProtocolError: a malformed head, or ambiguous framing.
    """
    lines = block.split(b"\r\n")
    status_line = _STATUS_LINE.fullmatch(lines[0])
    if status_line is None:
        raise UpstreamProtocolError("malformed status line")
    http11 = status_line[1] == b"1"
    status = int(status_line[2])
    if not 100 <= status <= 599:
        raise UpstreamProtocolError("status code out of range")
    headers = Headers(_parse_field(line, "header") for line in lines[1:])
    tokens = headers.connection_tokens()
    keep_alive = ("close" not in tokens) if http11 else ("keep-alive" in tokens)
    content_length = _content_length(headers.get_all("content-length"))
    chunked = _chunked(headers.get_all("transfer-encoding"), http11)
    if chunked and content_length is not None:
        # RFC 9112 §6.3 lets Transfer-Encoding win; a proxy that guesses can be desynchronised
        # from the runner, so such a response is refused instead.
        raise UpstreamProtocolError("both Transfer-Encoding and Content-Length")
    if _has_no_body(status, method):
        chunked = False
    elif not chunked and content_length is None:
        keep_alive = False
    return ResponseHead(status, headers.without_hop_by_hop(), content_length, chunked,
                        keep_alive)


def _parse_field(line: bytes, kind: str) -> tuple[str, str]:
    """One ``name: value`` line, value trimmed of SP and HTAB only."""
    if line[:1] in (b" ", b"\t"):
        raise UpstreamProtocolError(f"obsolete line folding in a {kind} field")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        # Not quoted: a broken line may well be part of a value.
        raise UpstreamProtocolError(f"malformed {kind} field name")
    text = name.decode("ascii")
    value = value.strip(b" \t")
    if _CONTROL.search(value):
        raise UpstreamProtocolError(f"control character in the value of {kind} {text}")
    return text, value.decode("latin-1")


def _content_length(values: list[str]) -> int | None:
    """The one length all ``Content-Length`` fields and list elements agree on."""
    if not values:
        return None
    lengths = set()
    for value in values:
        for element in value.split(","):
            element = element.strip(_BLANKS)
            if not _DIGITS.fullmatch(element):
                raise UpstreamProtocolError("malformed Content-Length")
            lengths.add(int(element))
    if len(lengths) != 1:
        raise UpstreamProtocolError("conflicting Content-Length values")
    return lengths.pop()


def _chunked(values: list[str], http11: bool) -> bool:
    """True for ``Transfer-Encoding: chunked``; refuses every other coding (its body would
    reach the client still encoded, and the field describing it is hop-by-hop)."""
    if not values:
        return False
    if not http11:
        raise UpstreamProtocolError("Transfer-Encoding in an HTTP/1.0 response")
    codings = [coding.strip(_BLANKS).lower() for value in values for coding in value.split(",")]
    if codings != ["chunked"]:
        raise UpstreamProtocolError("Transfer-Encoding other than chunked")
    return True


def _has_no_body(status: int, method: str) -> bool:
    return method == "HEAD" or status in (204, 304) or 100 <= status < 200


def body_decoder(head: ResponseHead, method: str) -> BodyDecoder:
    """The decoder for the body that follows ``head``; it raises ``UpstreamProtocolError``."""
    if _has_no_body(head.status, method):
        return FixedLengthDecoder(0)
    if head.chunked:
        return _ResponseChunkedDecoder()
    if head.content_length is not None:
        return FixedLengthDecoder(head.content_length)
    return _UntilClose()
