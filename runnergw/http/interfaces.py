"""What the HTTP server hands over, and what it is told: the client stream, its record and
the policy of the route it serves.

The server knows nothing of routes or filters. Whoever handles a request (the chain) is given
the ``ClientStream``; it replaces the stream's ``record`` with its own (the exchange, which the
server keeps up to date: bytes, status, times, what went wrong) and, once it knows the route,
its ``policy`` (body size limit, error shape).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Protocol

import attrs
from zope.interface import Attribute, Interface

__all__ = ["IClientStream", "IRequestHandler", "StreamPolicy", "StreamRecord",
           "error_body_json"]


def error_body_json(status: int, message: str) -> bytes:
    """The server's own error shape, ``{"error": "…"}``, until a route says otherwise."""
    return json.dumps({"error": message}).encode()


@attrs.frozen
class StreamPolicy:
    """What the route serving a request wants of the server."""

    max_body_size: int | None = None
    """Largest request body (a chunked one is counted as it comes); None: no limit here."""
    error_body: Callable[[int, str], bytes] = error_body_json
    """How errors the server answers itself (a body too large, too slow) are shaped."""


class MessageRecord(Protocol):
    """What the server records about an exchange as it serves it (the audit reads it)."""

    request_id: str
    status: int
    bytes_in: int
    bytes_out: int
    first_byte_at: float | None
    finished_at: float | None
    outcome: str
    reason: str | None


@attrs.define
class StreamRecord:
    """The record of a request no handler took over (the server's own default)."""

    request_id: str
    status: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    first_byte_at: float | None = None
    finished_at: float | None = None
    outcome: str = "ok"
    reason: str | None = None


class IRequestHandler(Interface):
    """Serves each request the server has read the head of."""

    def handle(stream):  # type: ignore[no-untyped-def]
        """Serve ``stream`` (an ``IClientStream`` with ``head``, ``request_id``,
        ``client_address``, ``secure`` and ``started``); return a Deferred that fires when
        the exchange is over."""


class IClientStream(Interface):
    """The client side of an exchange, as the chain and terminals see it."""

    def start_body(consumer):  # type: ignore[no-untyped-def]
        """Start reading the request body into ``consumer`` (sends ``100 Continue`` if asked).

        ``consumer`` has ``body_data(bytes)``, ``body_done()`` and ``body_failed(reason)``.
        """

    def pause_body():  # type: ignore[no-untyped-def]
        """Stop reading the request body (backpressure from upstream)."""

    def resume_body():  # type: ignore[no-untyped-def]
        """Resume reading the request body."""

    def send_head(status, headers, length):  # type: ignore[no-untyped-def]
        """Send the response head; ``length`` None means chunked (or close-delimited)."""

    def write(data):  # type: ignore[no-untyped-def]
        """Send response body bytes."""

    def finish():  # type: ignore[no-untyped-def]
        """End the response."""

    def abort(reason):  # type: ignore[no-untyped-def]
        """Drop the connection (a response that cannot be completed)."""

    def register_producer(producer):  # type: ignore[no-untyped-def]
        """Pause ``producer`` while the client is not taking bytes."""

    def unregister_producer():  # type: ignore[no-untyped-def]
        """Undo ``register_producer``."""

    def when_gone(callback):  # type: ignore[no-untyped-def]
        """Call ``callback()`` at once if the client disconnects before the response ends
        (or, for a terminal, once the chain ended the answer itself)."""

    record = Attribute("The exchange's ``MessageRecord``, kept up to date by the server.")
    policy = Attribute("The ``StreamPolicy`` of the route being served.")
    head_sent = Attribute("True once the response head was sent.")
    gone = Attribute("True once the client connection is closed: stop producing.")
