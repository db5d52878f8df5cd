"""The exchange: one request travelling through the filter chain to a terminal and back."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import attrs

from runnergw.http.headers import Headers

if TYPE_CHECKING:
    from runnergw.chain.route import Route

__all__ = ["EndStream", "Exchange", "Identity", "Reply", "Reject", "exchange_for"]


@attrs.frozen
class Identity:
    """Who is calling, as established by the token filter and refined by the role filter."""

    subject: str | None
    role: str | None
    claims: Any = attrs.field(factory=dict, repr=False)
    token_kind: str = ""
    """``v4.public``, ``v2.local``… (never the token itself)."""
    token_id: str = ""
    """A short digest of the token: tells tokens apart (a token without ``sub``) without
    revealing it."""


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


class EndStream(Exception):
    """Raised by a response hook to end the answer here: ``final`` (a well-formed last NDJSON
    line, SSE event or bytes, without its terminator) is sent, the response is finished and
    the terminal is told to stop (the runner's request is closed, so the GPU stops)."""

    def __init__(self, final: bytes = b"", *, reason: str = "ended by a filter") -> None:
        super().__init__(reason)
        self.final = final
        self.reason = reason


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
    """Declared body length; None for a chunked body. Once the filters collected the body,
    the length of ``request_body`` as the ``request_body`` hooks left it."""
    route: Route | None = None
    upstream_path: str = "/"
    """The path to send upstream: the prefix stripped, still percent-encoded as it came."""
    api_path: str = "/"
    """``upstream_path`` percent-decoded: what the runner routes on (Ollama's router matches
    decoded paths, so ``/api/ch%61t`` is ``/api/chat``). Filters compare this one."""
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
    upstream_sent_at: float | None = None
    """Clock reading when the request head was written to the runner (the last try's)."""
    upstream_head_at: float | None = None
    """Clock reading when the runner's response head arrived (None: none came)."""
    finished_at: float | None = None
    upstream: str | None = None
    outcome: str = "ok"
    """``ok``, ``denied``, ``client_error``, ``upstream_error``, ``timeout``, ``client_gone``…"""
    reason: str | None = None
    """Why the request was denied or failed (never a token or prompt)."""
    model: str | None = None
    notes: dict[str, Any] = attrs.field(factory=dict)
    """Extra audit fields set by filters."""
    metadata: dict[str, Any] = attrs.field(factory=dict, repr=False)
    """What a filter leaves for later filters (the caller's role rules, the parsed request),
    under keys named after the filter that sets them; never audited."""
    admission: Any = attrs.field(default=None, repr=False)
    """Checks request hooks postponed to make together (``chain.admission.IAdmission``),
    made by the chain at the points that interface names."""
    request_body: bytes | None = None
    """The whole request body, once collected for a filter that asked (``collect_body``);
    a ``request_body`` hook may replace it, and the terminal then sends the new one."""
    uploads: dict[str, str] = attrs.field(factory=dict)
    """On command routes, the upload fields stored by the terminal: field id → file path."""
    form: dict[str, str] = attrs.field(factory=dict)
    """On command routes, the text fields of the multipart form."""
    response_framing: str = ""
    """How an observed answer is cut for its observers: ``ndjson`` (a line each), ``sse``
    (an event each), ``json`` (the whole body), ``bytes`` (each chunk as it comes)."""
    body_limit: int | None = attrs.field(default=None, repr=False)
    """Set through ``collect_body``: the smallest body limit any filter asked for."""
    response_observers: list[Any] = attrs.field(factory=list, repr=False)
    """Filters that asked to observe the answer (``observe_response``)."""
    response_body_limit: int = attrs.field(default=1 << 20, repr=False)
    """Largest whole JSON answer collected for ``response_body`` hooks (and the longest line
    or event handed to ``response_line`` hooks)."""
    _response_limit_given: bool = attrs.field(default=False, init=False, repr=False)

    @property
    def has_body(self) -> bool:
        """True when the client sends a body."""
        return self.content_length is None or self.content_length > 0

    def record_refusal(self, rejection: Reject) -> None:
        """Note a refusal for the audit: ``denied`` (401, 403) or ``refused``, unless the
        exchange already went wrong otherwise (the first outcome and reason stand)."""
        if self.outcome == "ok":
            self.outcome = "denied" if rejection.status in (401, 403) else "refused"
        self.reason = self.reason or rejection.reason

    def record_truncation(self, stop: EndStream) -> None:
        """Note that a filter ended the answer early (``truncated``, with its reason)."""
        if self.outcome == "ok":
            self.outcome = "truncated"
            self.reason = stop.reason

    def collect_body(self, max_size: int) -> None:
        """Ask, from a ``request_headers`` hook, for the whole request body before the terminal.

        The gateway then reads up to ``max_size`` bytes (a larger body is refused with 413 in
        the route's error shape), sets ``request_body`` and runs the ``request_body`` hooks,
        which may replace it. When several filters ask, the smallest limit holds. Requests no
        filter asks about stream to the terminal untouched.
        """
        if max_size < 0:
            raise ValueError("max_size must not be negative")
        self.body_limit = max_size if self.body_limit is None else min(self.body_limit, max_size)

    def observe_response(self, observer: Any, max_size: int | None = None) -> None:
        """Ask, from any hook before the answer's head is sent, to watch the answer.

        ``observer``'s ``response_line`` runs per NDJSON line or SSE event of a streamed
        answer, ``response_body`` on a whole JSON answer of at most ``max_size`` bytes
        (a larger one is a 502, never passed unchecked; when several observers give a size
        the smallest holds, when none does 1 MiB), ``response_chunk`` per
        chunk of anything else. Answers nobody observes are relayed untouched. Several
        observers see the answer as every response hook does: the filter nearest the terminal
        first, each of the others what the one after it made of it.
        """
        if max_size is not None:
            self.response_body_limit = min(self.response_body_limit, max_size) \
                if self._response_limit_given else max_size
            self._response_limit_given = True
        if observer not in self.response_observers:
            self.response_observers.append(observer)


def exchange_for(stream: Any) -> Exchange:
    """The exchange of a request the server has read the head of (an ``IClientStream``); it
    becomes the stream's record, which the server keeps up to date."""
    head = stream.head
    exchange = Exchange(
        request_id=stream.request_id,
        method=head.method,
        path=head.path,
        query=head.query,
        version=head.version,
        headers=head.headers,
        client_address=stream.client_address,
        secure=stream.secure,
        started=stream.started,
        content_length=head.content_length,
    )
    stream.record = exchange
    return exchange
