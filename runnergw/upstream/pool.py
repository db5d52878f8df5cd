"""Persistent connections to one runner: reuse idle ones, open new ones, close on shutdown."""

from __future__ import annotations

import time
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred, succeed
from twisted.internet.error import ConnectingCancelledError
from twisted.internet.interfaces import IAddress, IDelayedCall, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import Factory
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.logs import level_gate
from runnergw.upstream.connection import UpstreamConnection

__all__ = ["UpstreamPool"]

REMIND_AFTER = 300.0
"""While a runner stays unreachable, its failures are logged again at most this often."""


@attrs.define
class _Outage:
    """Connect failures since the runner was last reachable."""

    since: float
    last_logged: float
    failures: int = 1


class _ConnectionFactory(Factory):
    """Builds the pool's connections; quiet, as Twisted's factories are not by default."""

    noisy = False
    """No "Starting factory" / "Stopping factory" lines for every connection."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool

    def buildProtocol(self, addr: IAddress) -> UpstreamConnection:
        return UpstreamConnection(self.pool)


class UpstreamPool:
    """Keeps up to ``max_idle`` idle connections, each for at most ``idle_timeout`` seconds.

    ``name`` labels the runner in log lines; without it the endpoint's address is used.
    """

    log = Logger(observer=level_gate)

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        clock: IReactorTime,
        *,
        name: str,
        max_idle: int = 64,
        idle_timeout: float = 60.0,
    ) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.max_idle = max_idle
        self.idle_timeout = idle_timeout
        self.name = name
        """The runner's name in settings, as log lines name it."""
        self._factory = _ConnectionFactory(self)
        self._idle: list[UpstreamConnection] = []
        self._idle_timers: dict[UpstreamConnection, IDelayedCall] = {}
        self._open: set[UpstreamConnection] = set()
        self._closing = False
        self._all_closed: list[Deferred[None]] = []
        self._outage: _Outage | None = None

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
        connecting: Deferred[UpstreamConnection] = self.endpoint.connect(self._factory)
        connecting.addCallbacks(self._connected, self._connect_failed)
        return connecting

    def _connected(self, connection: UpstreamConnection) -> UpstreamConnection:
        outage, self._outage = self._outage, None
        if outage is not None:
            self.log.info("runner {runner} reachable again ({failures} failed connects since "
                          "{since})", runner=self.name, failures=outage.failures,
                          since=_timestamp(outage.since))
        return connection

    def _connect_failed(self, failure: Failure) -> Failure:
        if failure.check(CancelledError, ConnectingCancelledError):
            # The client left while connecting: nothing is wrong with the runner. Whatever
            # the endpoint says, a cancelled acquire() fails as any cancelled Deferred does.
            return Failure(CancelledError())
        now = self.clock.seconds()
        outage = self._outage
        if outage is None:
            self._outage = _Outage(since=now, last_logged=now)
            self.log.warn("runner {runner} unreachable: {reason}", runner=self.name,
                          reason=failure.getErrorMessage())
        else:
            outage.failures += 1
            if now - outage.last_logged >= REMIND_AFTER:
                outage.last_logged = now
                self.log.warn("runner {runner} still unreachable: {reason} ({failures} failed "
                              "connects since {since})", runner=self.name,
                              reason=failure.getErrorMessage(), failures=outage.failures,
                              since=_timestamp(outage.since))
        return failure

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


def _timestamp(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))
