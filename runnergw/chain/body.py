"""Collecting a request body for the filters that asked to see it, within their limit."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred

from runnergw.chain.exchange import Exchange
from runnergw.chain.hookcalls import call_each

__all__ = ["BodyCollector", "BodyTooLarge", "body_as_left", "run_body_hooks"]


class BodyTooLarge(Exception):
    """The body grew past the limit the filters set."""


class BodyCollector:
    """A body consumer that keeps at most ``limit`` bytes; ``result`` fires with the body.

    ``result`` fails with ``BodyTooLarge`` as soon as the limit is passed (what arrives after
    is dropped), or with the connection error when the client leaves midway.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.result: Deferred[bytes] = Deferred()
        self._parts: list[bytes] = []
        self._size = 0

    def body_data(self, data: bytes) -> None:
        if self.result.called:
            return
        self._size += len(data)
        if self._size > self.limit:
            self._parts = []
            self.result.errback(BodyTooLarge(self.limit))
            return
        self._parts.append(data)

    def body_done(self) -> None:
        if not self.result.called:
            body = b"".join(self._parts)
            self._parts = []
            self.result.callback(body)

    def body_failed(self, reason: Exception) -> None:
        if not self.result.called:
            self._parts = []
            self.result.errback(reason)


def run_body_hooks(route: Any, exchange: Exchange) -> Deferred[None] | None:
    """Run the route's ``request_body`` hooks on a whole body (until one answers with
    ``exchange.response``): None when every hook finished at once, else a Deferred for the
    rest. ``body_as_left`` then checks what they left."""
    return call_each(route.hooks.request_body, "request_body", exchange, until_answered=True)


def body_as_left(exchange: Exchange) -> bool:
    """After the ``request_body`` hooks: False when one answered (``exchange.response``),
    else True; the terminal then sends the body as the hooks left it, with its own length.

    Raises:
        TypeError: a hook left something else than bytes in ``request_body``.
    """
    if exchange.response is not None:
        return False
    body = exchange.request_body
    if body is None and exchange.body_limit is not None:
        raise TypeError("exchange.request_body was set to None after the body was read: "
                        "set it to b'' for an empty body")
    if body is not None:
        if not isinstance(body, bytes):
            raise TypeError(f"exchange.request_body was set to {type(body).__name__}, "
                            "not bytes")
        exchange.content_length = len(body)
    return True
