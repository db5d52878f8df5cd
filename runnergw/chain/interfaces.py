"""The interfaces a filter and a terminal provide."""

from __future__ import annotations

from zope.interface import Attribute, Interface

__all__ = ["IClientStream", "IFilter", "ITerminal"]


class IFilter(Interface):
    """A step of a route's chain. Request hooks run in order; response hooks in reverse.

    A request hook may return an awaitable; it may refuse the request by raising
    ``Reject`` or answer it by setting ``exchange.response``, and the remaining request hooks
    and the terminal are then skipped. ``done`` always runs, for every filter of the chain.
    """

    name = Attribute("Short name used in settings and logs.")

    def request(exchange):  # type: ignore[no-untyped-def]
        """Called once the request head is in, before any body byte is read."""

    def response_headers(exchange):  # type: ignore[no-untyped-def]
        """Called (synchronously) just before the response head goes to the client."""

    def done(exchange):  # type: ignore[no-untyped-def]
        """Called when the exchange is over: answered, refused, failed or abandoned."""


class IClientStream(Interface):
    """The client side of an exchange, as the gateway and terminals see it."""

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
        """Call ``callback()`` at once if the client disconnects before the response ends."""

    head_sent = Attribute("True once the response head was sent.")
    gone = Attribute("True once the client connection is closed.")


class ITerminal(Interface):
    """Where a route's exchange ends: it produces the response."""

    def handle(exchange, client, send_head):  # type: ignore[no-untyped-def]
        """Serve the exchange; return a Deferred that fires when the response is over.

        ``send_head(status, headers, length)`` runs the chain's ``response_headers`` hooks
        and sends the head to ``client``.
        """
