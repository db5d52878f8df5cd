"""The factory of the gateway's HTTP/1.1 connections, and what they share: the request
handler, head limits and timeouts, the open connections and the gateway's stop."""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Factory

from runnergw.http.connections import OpenConnections
from runnergw.http.dates import DateHeader
from runnergw.http.head import HeadLimits
from runnergw.http.interfaces import IRequestHandler, StreamPolicy
from runnergw.http.server import GatewayHTTPProtocol
from runnergw.http.timers import ConnectionTimeouts

__all__ = ["GatewayHTTPFactory"]

_DEFAULT_LIMITS = HeadLimits()
_DEFAULT_TIMEOUTS = ConnectionTimeouts()
_DEFAULT_POLICY = StreamPolicy()


class GatewayHTTPFactory(Factory):
    """Builds a ``GatewayHTTPProtocol`` per connection."""

    def __init__(
        self,
        handler: IRequestHandler,
        clock: IReactorTime,
        *,
        limits: HeadLimits = _DEFAULT_LIMITS,
        timeouts: ConnectionTimeouts = _DEFAULT_TIMEOUTS,
        secure: bool = False,
        default_policy: StreamPolicy = _DEFAULT_POLICY,
    ) -> None:
        self.handler = handler
        self.default_policy = default_policy
        """The policy of a request before (or without) a route: no body limit, ``{"error"}``."""
        self.clock = clock
        self.limits = limits
        self.timeouts = timeouts
        self.secure = secure
        self.dates = DateHeader(clock)
        self.noisy = False
        self.connections = OpenConnections()
        """The open client connections (``GatewayHTTPProtocol``)."""
        self.closing = False
        """Set once the gateway stops accepting: no connection is kept alive any more."""
        self.refused: dict[int, int] = {}
        """Requests refused before any exchange began (a malformed or too slow head), by
        status: the metrics count them."""

    def close_when_idle(self) -> None:
        """The gateway stops accepting: close the connections waiting for a next request,
        and each other one once its exchange is over (its answer says ``Connection: close``
        when its head is still to be sent)."""
        self.closing = True
        self.connections.each(lambda protocol: protocol.close_if_idle())

    def close_connections(self) -> None:
        """Drop every client connection (shutdown; nothing waits for a TLS goodbye)."""
        self.connections.each(lambda protocol: protocol.abort_connection())

    def buildProtocol(self, addr: Any) -> GatewayHTTPProtocol:
        return GatewayHTTPProtocol(self)
