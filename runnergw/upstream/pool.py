"""Persistent connections to one runner: reuse idle ones, open new ones, close on shutdown."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import connectProtocol
from twisted.internet.interfaces import IDelayedCall, IReactorTime, IStreamClientEndpoint

from runnergw.upstream.connection import UpstreamConnection

__all__ = ["UpstreamPool"]


class UpstreamPool:
    """Keeps up to ``max_idle`` idle connections, each for at most ``idle_timeout`` seconds.

    ``name`` labels the runner in log lines; without it the endpoint's address is used.
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        *,
        max_idle: int = 64,
        idle_timeout: float = 60.0,
        name: str = "",
    ) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.name = name or _endpoint_label(endpoint)
        self._idle: list[UpstreamConnection] = []
        self._idle_timers: dict[UpstreamConnection, IDelayedCall] = {}
        self._open: set[UpstreamConnection] = set()
        self._closing = False
        self._all_closed: list[Deferred[None]] = []

    def acquire(self) -> Deferred[UpstreamConnection]:
        """An idle connection (most recently used first), or a new one."""
        while self._idle:
            connection = self._idle.pop()
            timer = self._idle_timers.pop(connection, None)
            if timer is not None and timer.active():
                timer.cancel()
            if not connection.lost:
                connection.reused = True
                return succeed(connection)
        return connectProtocol(self.endpoint, UpstreamConnection(self))

    def release(self, connection: UpstreamConnection) -> None:
        """Take a connection back after an exchange: keep it if it can serve another."""
        if connection.lost:
            return
        if not connection.reusable:
            connection.abort()
            return
        if self._closing or len(self._idle) >= self.max_idle:
            connection.close()
            return
        self._idle.append(connection)
        self._idle_timers[connection] = self.clock.callLater(
            self.idle_timeout, self._expire, connection
        )

    def _expire(self, connection: UpstreamConnection) -> None:
        self._idle_timers.pop(connection, None)
        if connection in self._idle:
            self._idle.remove(connection)
        connection.close()

    def connection_made(self, connection: UpstreamConnection) -> None:
        """Track every open connection (for shutdown)."""
        self._open.add(connection)

    def connection_lost(self, connection: UpstreamConnection) -> None:
        """Forget a closed connection."""
        self._open.discard(connection)
        if connection in self._idle:
            self._idle.remove(connection)
        timer = self._idle_timers.pop(connection, None)
        if timer is not None and timer.active():
            timer.cancel()
        if not self._open and self._all_closed:
            waiters, self._all_closed = self._all_closed, []
            for waiter in waiters:
                waiter.callback(None)

    def close(self) -> Deferred[Any]:
        """Drop every connection; fires when they are all closed."""
        self._closing = True
        if not self._open:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._all_closed.append(waiter)
        for connection in list(self._open):
            connection.abort()
        return waiter


def _endpoint_label(endpoint: IStreamClientEndpoint) -> str:
    """``host:port`` of a TCP endpoint (also under a TLS wrapper), best effort: Twisted's
    endpoints keep their address in private attributes."""
    inner = getattr(endpoint, "_wrappedEndpoint", endpoint)
    host = getattr(inner, "_hostText", None) or getattr(inner, "_host", None)
    port = getattr(inner, "_port", None)
    if isinstance(host, str) and isinstance(port, int):
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return "(unnamed)"
