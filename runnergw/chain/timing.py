"""The ``Server-Timing`` response header: what the gateway and the runner cost a request.

On runner routes and the 404s of a node with runners (unless ``server.serverTiming: false``),
every response head the client gets carries ``Server-Timing: gw;dur=<ms>, upstream;dur=<ms>``
(W3C Server Timing, durations in milliseconds). ``upstream`` runs from the request head
written to the runner to the runner's response head; ``gw`` is the rest of the time from the
client's request head to the response head sent. An answer the gateway makes itself, before
any runner head (a refusal, a 502, a 504), carries ``gw`` alone. A runner's own
``Server-Timing`` fields are kept: ours is one more field, which HTTP reads as the end of the
same list.

Every time is a reading of the reactor's clock, as ``Exchange.started`` is.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from runnergw.chain.exchange import Exchange
from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream

__all__ = ["ServerTiming", "TimedStream", "gateway_seconds", "server_timing_value",
           "upstream_seconds"]


def _milliseconds(seconds: float) -> str:
    return f"{max(seconds, 0.0) * 1000:.3f}"


def upstream_seconds(exchange: Exchange) -> float | None:
    """The runner's time to its response head (the header's ``upstream``), None when no
    runner head came."""
    sent, head = exchange.upstream_sent_at, exchange.upstream_head_at
    return None if sent is None or head is None else head - sent


def gateway_seconds(exchange: Exchange, head_sent_at: float) -> float:
    """The gateway's own time up to a head sent at ``head_sent_at`` (the header's ``gw``)."""
    return head_sent_at - exchange.started - (upstream_seconds(exchange) or 0.0)


def server_timing_value(exchange: Exchange, head_sent_at: float) -> str:
    """The header's value for a head sent at ``head_sent_at`` (a clock reading)."""
    upstream = upstream_seconds(exchange)
    gateway = _milliseconds(gateway_seconds(exchange, head_sent_at))
    if upstream is None:
        return f"gw;dur={gateway}"
    return f"gw;dur={gateway}, upstream;dur={_milliseconds(upstream)}"


class ServerTiming:
    """A route's ``Server-Timing``: adds the header to each head its client gets."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock

    def stamp(self, exchange: Exchange, headers: Headers) -> None:
        """Add the header, timed now, to ``headers`` (after any the runner sent)."""
        headers.add("Server-Timing", server_timing_value(exchange, self.clock.seconds()))

    def stream(self, client: IClientStream, exchange: Exchange) -> TimedStream:
        """``client``, with the header added to the head it is given."""
        return TimedStream(client, self, exchange)


@implementer(IClientStream)
class TimedStream:
    """A client stream whose response head gets the ``Server-Timing`` header; everything
    else goes to the stream as it is (its methods, not a call through this one)."""

    def __init__(self, client: IClientStream, timing: ServerTiming, exchange: Exchange) -> None:
        self.stream = client
        self._timing = timing
        self._exchange = exchange
        self.start_body = client.start_body
        self.pause_body = client.pause_body
        self.resume_body = client.resume_body
        self.write = client.write
        self.finish = client.finish
        self.abort = client.abort
        self.when_gone = client.when_gone
        self.register_producer = client.register_producer
        self.unregister_producer = client.unregister_producer

    def send_head(self, status: int, headers: Headers, length: int | None) -> None:
        client = self.stream
        if not client.head_sent and not client.gone:
            self._timing.stamp(self._exchange, headers)
        client.send_head(status, headers, length)

    @property
    def record(self) -> Any:
        return self.stream.record

    @property
    def policy(self) -> Any:
        return self.stream.policy

    @property
    def head_sent(self) -> bool:
        return bool(self.stream.head_sent)

    @property
    def gone(self) -> bool:
        return bool(self.stream.gone)
