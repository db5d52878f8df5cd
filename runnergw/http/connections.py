"""The server's open client connections, and the moment the last of them closed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred, succeed

__all__ = ["OpenConnections"]


class OpenConnections(set[Any]):
    """A set of connections (protocols) that tells, on request, when it is empty."""

    def __init__(self) -> None:
        super().__init__()
        self._empty_waiters: list[Deferred[None]] = []

    def discard(self, connection: Any) -> None:
        """A connection closed: those waiting for the last one are told."""
        super().discard(connection)
        if not self and self._empty_waiters:
            waiters, self._empty_waiters = self._empty_waiters, []
            for waiter in waiters:
                waiter.callback(None)

    def each(self, action: Callable[[Any], object]) -> None:
        """``action(connection)`` for every connection open now (one may close meanwhile)."""
        for connection in list(self):
            action(connection)

    def when_empty(self) -> Deferred[None]:
        """Fires once no connection is open (at once when none is); cancelling it only stops
        this wait."""
        if not self:
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._empty_waiters.remove)
        self._empty_waiters.append(waiter)
        return waiter
