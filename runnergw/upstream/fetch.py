"""A small ``GET`` of the gateway's own to a runner host (``/api/version``, ``/api/ps``), over
the host's pooled connections, bounded in time and size."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, ensureDeferred
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorTime

from runnergw.upstream.response import ResponseHead, UpstreamProtocolError

__all__ = ["fetch"]


class _Collector:
    """Keeps a whole response of at most ``limit`` bytes (a ``ResponseHandler``)."""

    def __init__(self, connection: Any, limit: int) -> None:
        self.connection = connection
        self.limit = limit
        self.status = 0
        self.pieces: list[bytes] = []
        self.size = 0
        self.over: Deferred[tuple[int, bytes]] = Deferred(lambda _: connection.abort())

    def response_head(self, head: ResponseHead) -> None:
        self.status = head.status

    def response_data(self, data: bytes) -> None:
        self.size += len(data)
        if self.size > self.limit:
            self.connection.abort()
            self.over.errback(UpstreamProtocolError(f"answer larger than {self.limit} bytes"))
            return
        self.pieces.append(data)

    def response_done(self) -> None:
        self.over.callback((self.status, b"".join(self.pieces)))

    def response_failed(self, reason: Exception) -> None:
        self.over.errback(reason)


async def _get(pool: Any, netloc: str, path: str, limit: int) -> tuple[int, bytes]:
    head = (f"GET {path} HTTP/1.1\r\nHost: {netloc}\r\nUser-Agent: runnergw\r\n"
            f"Accept: application/json\r\n\r\n").encode("latin-1")
    while True:
        connection = await pool.acquire()
        try:
            collector = _Collector(connection, limit)
            connection.send_request("GET", head, collector, "none")
            return await collector.over
        except ConnectionLost:
            if not connection.reused or connection.dropped:
                raise
            # A kept-alive connection the host had closed while idle: says nothing of the
            # host; the next one is new or another kept one.
        finally:
            pool.release(connection)


def fetch(pool: Any, clock: IReactorTime, netloc: str, path: str, *, timeout: float,
          limit: int) -> Deferred[tuple[int, bytes]]:
    """``GET path`` from the host ``pool`` connects to: fires with ``(status, body)``; fails
    when it cannot connect (a kept-alive connection found closed is not a failure: the
    request goes on another), the answer is cut or larger than ``limit``, or the whole exchange
    (connecting included) takes longer than ``timeout`` seconds."""
    getting = ensureDeferred(_get(pool, netloc, path, limit))
    getting.addTimeout(timeout, clock)
    return getting
