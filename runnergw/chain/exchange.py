"""The exchange: one request travelling through the filter chain to a terminal and back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from runnergw.http.headers import Headers

if TYPE_CHECKING:
    from runnergw.chain.route import Route

__all__ = ["Exchange", "Identity", "Reply", "Reject"]


@attrs.frozen
class Identity:
    """Who is calling, as established by the token filter and refined by the role filter."""

    subject: str | None
    role: str | None
    claims: Any = attrs.field(factory=dict, repr=False)
    token_kind: str = ""
    """``v4.public``, ``v2.local``… (never the token itself)."""


@attrs.frozen
class Reply:
    """A complete answer made by a filter instead of the terminal (a deny, a cached reply)."""

    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


class Reject(Exception):
    """Raised by a filter or terminal to refuse the request with an error in the route's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: tuple[tuple[str, str], ...] = (),
        reason: str | None = None,
    ) -> None:
        super().__init__(status, message)
        self.status = status
        self.message = message
        self.headers = headers
        self.reason = reason or message
        """What the audit trail records (may be more precise than the client message)."""


@attrs.define(eq=False)
class Exchange:
    """Mutable state of one request; filters read and change it, the audit filter records it."""

    request_id: str
    method: str
    path: str
    """The raw request path, without the query string."""
    query: str
    version: str
    headers: Headers
    """Request headers as received."""
    client_address: str
    secure: bool
    started: float
    """Clock reading when the request head was complete."""
    content_length: int | None
    """Declared body length; None for a chunked body."""
    route: Route | None = None
    upstream_path: str = "/"
    """The path (prefix stripped) and query to send upstream."""
    upstream_headers: Headers = attrs.field(factory=Headers)
    """Headers for the upstream request; filters may edit them."""
    identity: Identity | None = None
    response: Reply | None = None
    """Set by a filter to answer early; the remaining request hooks and the terminal are skipped."""
    status: int = 0
    response_headers: Headers = attrs.field(factory=Headers)
    """Headers of the response about to be sent to the client; filters may edit them."""
    bytes_in: int = 0
    bytes_out: int = 0
    first_byte_at: float | None = None
    finished_at: float | None = None
    upstream: str | None = None
    outcome: str = "ok"
    """``ok``, ``denied``, ``client_error``, ``upstream_error``, ``timeout``, ``client_gone``…"""
    reason: str | None = None
    """Why the request was denied or failed (never a token or prompt)."""
    model: str | None = None
    notes: dict[str, Any] = attrs.field(factory=dict)
    """Extra audit fields set by filters."""

    @property
    def has_body(self) -> bool:
        """True when the client sends a body."""
        return self.content_length is None or self.content_length > 0
