"""Runner hosts on a test clock whose connects the test decides: each is refused, or opens a
real ``UpstreamConnection`` on a ``StringTransport`` that the test answers or resets."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ConnectionLost, ConnectionRefusedError
from twisted.internet.interfaces import IReactorTime
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure

from runnergw.config.runner_pool import PoolSettings
from runnergw.upstream.balancer import HostBalancer
from runnergw.upstream.connection import UpstreamConnection
from runnergw.upstream.host import HostKey, UpstreamHost

__all__ = ["OK", "ScriptedPool", "answer", "make_balancer", "make_host", "reset"]

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"


class ScriptedPool:
    """A host's connection pool: ``acquire`` waits until the test calls ``refuse`` or
    ``open``; an idle connection handed to ``keep`` is given out again first."""

    def __init__(self, name: str = "gpu") -> None:
        self.name = name
        self.waiting: list[Deferred[UpstreamConnection]] = []
        self.idle: list[UpstreamConnection] = []
        self.released: list[UpstreamConnection] = []
        self.closed = False

    def acquire(self) -> Deferred[UpstreamConnection]:
        if self.idle:
            connection = self.idle.pop()
            connection.reused = True
            return succeed(connection)
        waiter: Deferred[UpstreamConnection] = Deferred()
        self.waiting.append(waiter)
        return waiter

    def refuse(self) -> None:
        """The oldest connect waiting is refused."""
        self.waiting.pop(0).errback(ConnectionRefusedError())

    def open(self) -> tuple[UpstreamConnection, StringTransport]:
        """The oldest connect waiting succeeds: the new connection and what it is sent."""
        connection, transport = self.connection()
        self.waiting.pop(0).callback(connection)
        return connection, transport

    def connection(self) -> tuple[UpstreamConnection, StringTransport]:
        """A connected connection of this pool (not handed out)."""
        connection = UpstreamConnection(self)  # type: ignore[arg-type]
        transport = StringTransport()
        connection.makeConnection(transport)
        return connection, transport

    def keep(self, connection: UpstreamConnection) -> None:
        """Make ``connection`` the idle one the next ``acquire`` reuses."""
        self.idle.append(connection)

    def connection_made(self, connection: UpstreamConnection) -> None:
        pass

    def connection_lost(self, connection: UpstreamConnection) -> None:
        pass

    def release(self, connection: UpstreamConnection) -> None:
        self.released.append(connection)

    def close(self) -> Deferred[None]:
        self.closed = True
        return succeed(None)


def answer(connection: UpstreamConnection, status: int = 200, body: bytes = b"{}") -> None:
    """The host answers the request under way with ``status`` and a JSON ``body``."""
    reason = {200: b"OK", 404: b"Not Found", 500: b"Internal Server Error"}.get(status, b"X")
    connection.dataReceived(b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                            b"Content-Length: %d\r\n\r\n%s" % (status, reason, len(body), body))


def reset(connection: UpstreamConnection) -> None:
    """The host resets the connection."""
    connection.connectionLost(Failure(ConnectionLost("reset by peer")))


def make_host(clock: IReactorTime, address: str = "10.0.0.1", **options: Any
              ) -> tuple[UpstreamHost, ScriptedPool]:
    """A host of runner ``gpu`` at ``address:11434`` with pool ``options``
    (``eject_after=2``…), and its scripted pool."""
    pool = ScriptedPool()
    key = HostKey("http", address, 11434, pool=PoolSettings(**options))
    return UpstreamHost(key, pool, clock, "gpu"), pool


def make_balancer(clock: IReactorTime, count: int = 2, **options: Any
                  ) -> tuple[HostBalancer, list[ScriptedPool]]:
    """Runner ``gpu`` of ``count`` hosts (10.0.0.1, 10.0.0.2…), and their pools."""
    made = [make_host(clock, f"10.0.0.{index + 1}", **options) for index in range(count)]
    hosts = [host for host, _ in made]
    return HostBalancer("gpu", hosts, PoolSettings(**options)), [pool for _, pool in made]
