"""The Ollama proxy terminal: stream the exchange to a runner and the answer back."""

from __future__ import annotations

import re
from typing import Any

from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import (
    UNKNOWN_LENGTH,
    PotentialDataLoss,
    RequestTransmissionFailed,
    ResponseDone,
    ResponseFailed,
    ResponseNeverReceived,
)
from twisted.web.http_headers import Headers as TwistedHeaders
from twisted.web.iweb import IAgent, IBodyProducer, IResponse
from zope.interface import implementer

from runnergw.config.runners import RunnerSettings
from runnergw.http.headers import Headers
from runnergw.logs import level_gate
from runnergw.pipeline.exchange import Exchange, Reject
from runnergw.pipeline.interfaces import IClientStream, ITerminal

__all__ = ["OllamaTerminal"]

_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,200})"')
_CONNECT_ERRORS = (
    net_error.ConnectError,
    net_error.DNSLookupError,
    ConnectionRefusedError,
)
_TRANSPORT_ERRORS = (
    ResponseNeverReceived,
    ResponseFailed,
    RequestTransmissionFailed,
    net_error.ConnectionLost,
    net_error.ConnectionDone,
)


@implementer(IBodyProducer)
class _RequestBody:
    """Feeds the client's request body to the upstream request, with backpressure both ways."""

    def __init__(self, client: IClientStream, exchange: Exchange) -> None:
        self._client = client
        self._exchange = exchange
        length = exchange.content_length
        self.length = UNKNOWN_LENGTH if length is None else length
        self._consumer: Any = None
        self._finished: Deferred[None] | None = None
        self._stopped = False
        self._sniffed = False
        self.on_progress: Any = None
        """Called after each piece of body handed to the runner's connection."""

    def startProducing(self, consumer: Any) -> Deferred[None]:
        self._consumer = consumer
        self._finished = Deferred()
        self._client.start_body(self)
        return self._finished

    def body_data(self, data: bytes) -> None:
        if not self._sniffed:
            self._sniffed = True
            match = _MODEL.search(data, 0, 4096)
            if match:
                self._exchange.model = match.group(1).decode("utf-8", "replace")
        if not self._stopped:
            self._consumer.write(data)
            if self.on_progress is not None:
                self.on_progress()

    def body_done(self) -> None:
        if not self._stopped and self._finished is not None:
            self._stopped = True
            self._finished.callback(None)

    def body_failed(self, reason: Exception) -> None:
        if not self._stopped and self._finished is not None:
            self._stopped = True
            self._finished.errback(reason)

    def pauseProducing(self) -> None:
        self._client.pause_body()

    def resumeProducing(self) -> None:
        self._client.resume_body()

    def stopProducing(self) -> None:
        # The upstream will take no more (it answered early or went away); the client's
        # remaining bytes are drained and dropped so its connection can still be answered.
        self._stopped = True
        self._client.resume_body()


class _ResponseRelay(Protocol):
    """Writes upstream body chunks to the client as they arrive."""

    def __init__(
        self, client: IClientStream, exchange: Exchange, clock: IReactorTime, idle: float
    ) -> None:
        self.client = client
        self.exchange = exchange
        self.clock = clock
        self.idle = idle
        self.over: Deferred[None] = Deferred()
        self._timer: IDelayedCall | None = None
        self._ended = False

    def connectionMade(self) -> None:
        self.client.register_producer(self.transport)
        self.client.when_gone(self._client_gone)
        self._timer = self.clock.callLater(self.idle, self._idle_timeout)

    def dataReceived(self, data: bytes) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(self.idle)
        self.client.write(data)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        if self._ended:
            return
        self._ended = True
        if reason.check(ResponseDone, PotentialDataLoss):
            self.client.finish()
        else:
            if self.exchange.outcome == "ok":
                self.exchange.outcome = "upstream_error"
                self.exchange.reason = "runner closed the connection mid-response"
            self.client.abort("upstream failed")
        self.over.callback(None)

    def _client_gone(self) -> None:
        if not self._ended:
            self.transport.stopProducing()

    def _idle_timeout(self) -> None:
        self._timer = None
        if self.exchange.outcome == "ok":
            self.exchange.outcome = "timeout"
            self.exchange.reason = f"runner sent nothing for {self.idle:g}s"
        self.transport.stopProducing()
        self.client.abort("upstream idle")


def _twisted_headers(headers: Headers) -> TwistedHeaders:
    result = TwistedHeaders()
    for name, value in headers:
        result.addRawHeader(name.encode("ascii"), value.encode("latin-1"))
    return result


def _client_headers(response: IResponse) -> Headers:
    fields = Headers(
        (name.decode("ascii"), value.decode("latin-1"))
        for name, values in response.headers.getAllRawHeaders()
        for value in values
    )
    return fields.without_hop_by_hop()


@implementer(ITerminal)
class OllamaTerminal:
    """Proxies to one runner through a persistent connection pool."""

    log = Logger(observer=level_gate)

    def __init__(self, runner: RunnerSettings, agent: IAgent, clock: IReactorTime) -> None:
        self.runner = runner
        self.agent = agent
        self.clock = clock
        self._base = f"{runner.scheme}://{runner.netloc}".encode("ascii")

    async def handle(self, exchange: Exchange, client: IClientStream, send_head: Any) -> None:
        """Send the request upstream and relay the response (see ``ITerminal``)."""
        exchange.upstream = self.runner.name
        headers = self._upstream_headers(exchange)
        url = self._base + exchange.upstream_path.encode("ascii")
        if exchange.query:
            url += b"?" + exchange.query.encode("ascii")
        body = _RequestBody(client, exchange) if exchange.has_body else None
        response = await self._request(exchange, client, url, headers, body)
        if response is None:
            return
        length = None if response.length is UNKNOWN_LENGTH else response.length
        if exchange.method == "HEAD":
            declared = response.headers.getRawHeaders(b"content-length")
            length = int(declared[0]) if declared and declared[0].isdigit() else None
        send_head(response.code, _client_headers(response), length)
        relay = _ResponseRelay(client, exchange, self.clock, self.runner.idle_timeout)
        response.deliverBody(relay)
        await relay.over

    def _upstream_headers(self, exchange: Exchange) -> TwistedHeaders:
        headers = exchange.upstream_headers
        headers.set("X-Forwarded-For", exchange.client_address)
        headers.set("X-Forwarded-Proto", "https" if exchange.secure else "http")
        host = exchange.headers.get("host")
        if host is not None:
            headers.set("X-Forwarded-Host", host)
        headers.set("X-Request-Id", exchange.request_id)
        return _twisted_headers(headers)

    async def _request(
        self,
        exchange: Exchange,
        client: IClientStream,
        url: bytes,
        headers: TwistedHeaders,
        body: _RequestBody | None,
    ) -> IResponse | None:
        pending = self.agent.request(exchange.method.encode("ascii"), url, headers, body)
        why_cancelled: list[str] = []
        settled: list[bool] = []

        def cancel(why: str) -> None:
            # Not ``pending.called``: that is already true once a connection was taken from
            # the pool, while the Deferred waits for the response; cancel() reaches it then.
            if not settled and not why_cancelled:
                why_cancelled.append(why)
                pending.cancel()

        timeout = self.runner.first_byte_timeout
        timer = self.clock.callLater(timeout, cancel, "timeout")
        if body is not None:
            # A long upload is not a silent runner: the wait for the answer starts over
            # with every piece of the request body the runner takes.
            body.on_progress = lambda: timer.reset(timeout) if timer.active() else None
        client.when_gone(lambda: cancel("client"))
        try:
            return await pending
        except Exception as e:
            if why_cancelled == ["timeout"]:
                exchange.outcome = "timeout"
                raise Reject(504, f"runner {self.runner.name} did not answer in time",
                             reason="first byte timeout") from None
            if why_cancelled or client.gone or isinstance(e, CancelledError):
                return None
            if isinstance(e, net_error.TimeoutError):
                exchange.outcome = "timeout"
                raise Reject(504,
                             f"runner {self.runner.name} did not accept the connection in time",
                             reason="connect timeout") from None
            if isinstance(e, _CONNECT_ERRORS):
                exchange.outcome = "upstream_error"
                raise Reject(502, f"runner {self.runner.name} is unreachable",
                             reason=f"connect failed: {type(e).__name__}") from None
            if isinstance(e, _TRANSPORT_ERRORS):
                exchange.outcome = "upstream_error"
                raise Reject(502, f"runner {self.runner.name} closed the connection",
                             reason=f"upstream failed: {type(e).__name__}") from None
            raise
        finally:
            settled.append(True)
            if timer.active():
                timer.cancel()
