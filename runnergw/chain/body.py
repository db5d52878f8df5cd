"""Collecting a request body for the filters that asked to see it, within their limit."""

from __future__ import annotations

from twisted.internet.defer import Deferred

__all__ = ["BodyCollector", "BodyTooLarge"]


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
