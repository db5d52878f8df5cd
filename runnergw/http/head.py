"""Parse a request line and header block strictly (RFC 9112), before any body byte is read."""

from __future__ import annotations

import ipaddress
import re

import attrs

from runnergw.http.errors import BadRequest
from runnergw.http.headers import Headers

__all__ = ["HeadLimits", "RequestHead", "parse_request_head"]

_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_TARGET = re.compile(rb"/[\x21-\x7e]*")
_FIELD_VALUE_BAD = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_FIELD_LINE = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+):([^\x00-\x08\x0a-\x1f\x7f]*)\r\n")
"""One well-formed header field line: a token, a colon, a value without control characters
(linear: the value's surrounding blanks are stripped afterwards, not by the pattern)."""
_VERSIONS = {b"HTTP/1.1": "HTTP/1.1", b"HTTP/1.0": "HTTP/1.0"}
_HOST = re.compile(
    r"(?:\[([0-9A-Fa-f:.]+)\]|(?:[-A-Za-z0-9._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})+)(?::[0-9]{1,5})?"
)
"""``Host = uri-host [":" port]`` (RFC 9110 section 7.2): an IPv6 literal in brackets, or a
reg-name (which covers IPv4 addresses) of unreserved characters, sub-delims and
percent-escapes; then, optionally, a colon and a port of one to five digits."""


@attrs.frozen
class HeadLimits:
    """Bounds on what a client may send before its body."""

    max_line: int = 8192
    max_fields: int = 100
    max_bytes: int = 65536


@attrs.frozen
class RequestHead:
    """A validated request line and header block."""

    method: str
    target: str
    path: str
    query: str
    version: str
    headers: Headers
    content_length: int | None
    """Declared body length; ``None`` for a chunked body."""
    keep_alive: bool
    expect_continue: bool

    @property
    def has_body(self) -> bool:
        """True when a body follows the head."""
        return self.content_length is None or self.content_length > 0


def _parse_request_line(line: bytes, limits: HeadLimits) -> tuple[str, str, str]:
    if len(line) > limits.max_line:
        raise BadRequest(414, "request line too long")
    parts = line.split(b" ")
    if len(parts) != 3:
        raise BadRequest(400, "malformed request line")
    method, target, version = parts
    if version not in _VERSIONS:
        if version.startswith(b"HTTP/"):
            raise BadRequest(505, "only HTTP/1.1 and HTTP/1.0 are supported")
        raise BadRequest(400, "malformed request line")
    if not _TOKEN.fullmatch(method):
        raise BadRequest(400, "malformed method")
    if not _TARGET.fullmatch(target):
        raise BadRequest(400, "the request target must be an absolute path")
    if b"#" in target:
        # A fragment is never sent (RFC 9112 section 3.2); servers that cut it off and servers
        # that keep it in the path would see different paths.
        raise BadRequest(400, "a fragment (#) is not allowed in the request target")
    return method.decode("ascii"), target.decode("ascii"), _VERSIONS[version]


def _well_formed_fields(block: bytes, start: int, limits: HeadLimits) -> Headers | None:
    """The header fields of ``block`` from ``start`` on, when every line is well formed and
    within the limits; None otherwise (the line-by-line parse then says what is wrong).

    The common case, checked with one pattern match per line."""
    fields = []
    match = _FIELD_LINE.match
    end = len(block)
    position = start
    while position < end:
        line = match(block, position)
        if (line is None or line.end() - position - 2 > limits.max_line
                or len(fields) == limits.max_fields):
            return None
        fields.append((line[1].decode("ascii"), line[2].strip(b" \t").decode("latin-1")))
        position = line.end()
    return Headers(fields)


def _parse_fields(lines: list[bytes], limits: HeadLimits) -> Headers:
    if len(lines) > limits.max_fields:
        raise BadRequest(431, "too many header fields")
    fields = []
    for line in lines:
        if len(line) > limits.max_line:
            raise BadRequest(431, "header field too long")
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN.fullmatch(name):
            # Also refuses obsolete line folding and whitespace before the colon.
            raise BadRequest(400, "malformed header field")
        value = value.strip(b" \t")
        if _FIELD_VALUE_BAD.search(value):
            raise BadRequest(400, "control character in a header field")
        fields.append((name.decode("ascii"), value.decode("latin-1")))
    return Headers(fields)


def _valid_host(value: str) -> bool:
    match = _HOST.fullmatch(value)
    if match is None:
        return False
    if match[1] is not None:
        try:
            ipaddress.IPv6Address(match[1])
        except ValueError:
            return False
    return True


def _framing(headers: Headers, version: str) -> int | None:
    """The declared body length; None for chunked. Refuses ambiguous framing (smuggling)."""
    encodings = headers.get_all("transfer-encoding")
    lengths = headers.get_all("content-length")
    if encodings:
        if version == "HTTP/1.0":
            raise BadRequest(400, "Transfer-Encoding is not allowed in HTTP/1.0")
        if lengths:
            raise BadRequest(400, "both Transfer-Encoding and Content-Length")
        # Exactly "chunked", in any ASCII case, as Go reads it: the value is already trimmed
        # of optional whitespace, and nothing else (NBSP, NEL) may be dropped around it.
        if len(encodings) != 1 or encodings[0].lower() != "chunked":
            raise BadRequest(501, "only Transfer-Encoding: chunked is supported")
        return None
    if not lengths:
        return 0
    if len(lengths) != 1:
        raise BadRequest(400, "more than one Content-Length")
    text = lengths[0]
    if not text.isdigit() or not text.isascii() or len(text) > 18:
        raise BadRequest(400, "malformed Content-Length")
    return int(text)


def parse_request_head(block: bytes, limits: HeadLimits) -> RequestHead:
    """Parse everything before the empty line that ends the head.

    Args:
        block: the request line and header fields, CRLF-separated, without the final CRLFCRLF.
        limits: size bounds.

    Raises:
        BadRequest: anything a careful server refuses (status and reason inside).
    """
    if len(block) > limits.max_bytes:
        raise BadRequest(431, "request header block too large")
    cut = block.find(b"\r\n")
    request_line = block if cut < 0 else block[:cut]
    headers = None
    if b"\n" not in request_line and b"\r" not in request_line:
        headers = (Headers() if cut < 0 else
                   _well_formed_fields(block + b"\r\n", cut + 2, limits))
    if headers is None:
        # Something is wrong, or the limits are reached: line by line, to say what.
        lines = block.split(b"\r\n")
        if any(b"\n" in line or b"\r" in line for line in lines):
            raise BadRequest(400, "bare CR or LF in the request head")
        method, target, version = _parse_request_line(lines[0], limits)
        headers = _parse_fields(lines[1:], limits)
    else:
        method, target, version = _parse_request_line(request_line, limits)
    hosts = headers.get_all("host")
    if version == "HTTP/1.1" and len(hosts) != 1:
        raise BadRequest(400, "exactly one Host header is required")
    if len(hosts) > 1:
        raise BadRequest(400, "more than one Host header")
    if hosts and not _valid_host(hosts[0]):
        raise BadRequest(400, "the Host header is not a valid host[:port]")
    content_length = _framing(headers, version)
    tokens = headers.connection_tokens()
    keep_alive = "close" not in tokens if version == "HTTP/1.1" else "keep-alive" in tokens
    expect = headers.get("expect")
    if expect is not None and expect.lower() != "100-continue":
        raise BadRequest(417, "only Expect: 100-continue is supported")
    path, _, query = target.partition("?")
    return RequestHead(
        method=method,
        target=target,
        path=path,
        query=query,
        version=version,
        headers=headers,
        content_length=content_length,
        keep_alive=keep_alive,
        expect_continue=expect is not None and version == "HTTP/1.1",
    )
