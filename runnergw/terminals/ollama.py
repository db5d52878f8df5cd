"""The Ollama proxy terminal: stream the exchange to a runner and the answer back."""

from __future__ import annotations

from typing import Any

from twisted.internet import error as net_error
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Reject
from runnergw.chain.interfaces import ITerminal
from runnergw.chain.under_way import UnderWay
from runnergw.config.runners import RunnerSettings
from runnergw.filters.ollama_request import ollama_endpoint
from runnergw.http.interfaces import IClientStream
from runnergw.logs import level_gate
from runnergw.ollama.gojson import decode_object
from runnergw.ollama.model_names import normalize_model_name
from runnergw.ollama.rewrites import requested_model
from runnergw.upstream.balancer import HostBalancer, HostStatus
from runnergw.upstream.connection import UpstreamConnection
from runnergw.upstream.host import UpstreamHost
from runnergw.upstream.response import ResponseHead, UpstreamProtocolError

__all__ = ["OllamaTerminal"]

_MODEL_READ_LIMIT = 64 << 10
"""Largest body whose model the terminal reads when no filter read it."""
_CONNECT_FAILURES = (net_error.ConnectError, net_error.DNSLookupError, ConnectionRefusedError)
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class _Failed(Exception):
    """The runner failed before its response head: ``reject`` says what the client gets."""

    def __init__(self, reject: Reject, stale: bool = False, unsent: bool = False) -> None:
        super().__init__(reject)
        self.reject = reject
        self.stale = stale
        """True when a reused connection broke before answering (worth one more try)."""
        self.unsent = unsent
        """True when nothing of the request reached the runner (another host may take it)."""


def _top_level_model(exchange: Exchange, body: bytes) -> str | None:
    """The model the whole ``body`` names as Ollama reads it (its top-level ``model``), in
    normal form; None when it names none Ollama would take."""
    endpoint = ollama_endpoint(exchange)
    if endpoint is None:
        return None
    try:
        model = requested_model(decode_object(body), endpoint)
        return normalize_model_name(model) if model else None
    except ValueError:  # not JSON Ollama reads, or a model name it refuses
        return None


@implementer(IPushProducer)
class _RequestBody:
    """Pumps the client's request body to the runner, pausing the client when the runner lags."""

    def __init__(self, connection: UpstreamConnection, client: IClientStream,
                 exchange: Exchange, on_progress: Any) -> None:
        self._connection = connection
        self._client = client
        self._exchange = exchange
        self._on_progress = on_progress
        self._kept: list[bytes] | None = [] if exchange.model is None else None
        """The body so far, while no filter named the model and the body is small."""
        self._kept_size = 0

    def body_data(self, data: bytes) -> None:
        if self._kept is not None:
            self._kept_size += len(data)
            if self._kept_size > _MODEL_READ_LIMIT:
                self._kept = None
            else:
                self._kept.append(data)
        self._connection.write_body(data)
        self._on_progress()

    def body_done(self) -> None:
        if self._kept is not None:
            self._exchange.model = _top_level_model(self._exchange, b"".join(self._kept))
            self._kept = None
        self._connection.end_body()
        self._unregister()

    def body_failed(self, reason: Exception) -> None:
        self._unregister()

    def _unregister(self) -> None:
        if not self._connection.lost:
            self._connection.transport.unregisterProducer()

    def pauseProducing(self) -> None:
        self._client.pause_body()

    def resumeProducing(self) -> None:
        self._client.resume_body()

    def stopProducing(self) -> None:
        self._client.resume_body()


@implementer(IPushProducer)
class _ResponseRelay:
    """Relays the runner's response to the client as it arrives, with backpressure."""

    def __init__(self, terminal: OllamaTerminal, connection: UpstreamConnection,
                 client: IClientStream, exchange: Exchange) -> None:
        self.runner = terminal.runner
        self.clock = terminal.clock
        self.connection = connection
        self.client = client
        self.exchange = exchange
        self.over: Deferred[None] = Deferred()
        self._timer: IDelayedCall | None = self.clock.callLater(
            self.runner.first_byte_timeout, self._first_byte_timeout)
        self._head_seen = False
        self._ended = False

    def request_progress(self) -> None:
        """The runner took a piece of the body: the wait for its answer starts again."""
        if not self._head_seen and self._timer is not None and self._timer.active():
            self._timer.reset(self.runner.first_byte_timeout)

    # ResponseHandler

    def response_head(self, head: ResponseHead) -> None:
        self._head_seen = True
        self.exchange.upstream_head_at = self.clock.seconds()
        self._rearm(self.runner.idle_timeout, self._idle_timeout)
        length = head.content_length if not head.chunked else None
        self.client.send_head(head.status, head.headers, length)
        self.client.register_producer(self)

    def response_data(self, data: bytes) -> None:
        timer = self._timer
        if timer is not None and timer.active():
            timer.reset(self.runner.idle_timeout)
        self.client.write(data)

    def response_done(self) -> None:
        self._cancel_timer()
        self.client.finish()
        self._end()

    def response_failed(self, reason: Exception) -> None:
        self._cancel_timer()
        if not self._head_seen:
            name = self.runner.name
            if isinstance(reason, UpstreamProtocolError):
                reject = Reject(502, f"runner {name} sent an invalid response",
                                reason=f"upstream protocol error: {reason}")
            else:
                reject = Reject(502, f"runner {name} closed the connection",
                                reason="upstream closed the connection before answering")
            self.exchange.outcome = "upstream_error"
            self._end(_Failed(reject, stale=self.connection.reused))
            return
        if self.exchange.outcome == "ok":
            self.exchange.outcome = "upstream_error"
            self.exchange.reason = (
                f"upstream protocol error mid-response: {reason}"
                if isinstance(reason, UpstreamProtocolError)
                else "runner closed the connection mid-response")
        self.client.abort("upstream failed")
        self._end()

    # Events

    def client_gone(self) -> None:
        """The client left: close the runner's request at once so it stops generating."""
        if self._ended:
            return
        self._cancel_timer()
        self.connection.abort()
        self._end()

    def _first_byte_timeout(self) -> None:
        self._timer = None
        self.connection.abort()
        self.exchange.outcome = "timeout"
        self._end(_Failed(Reject(504, f"runner {self.runner.name} did not answer in time",
                                 reason="first byte timeout")))

    def _idle_timeout(self) -> None:
        self._timer = None
        if self.exchange.outcome == "ok":
            self.exchange.outcome = "timeout"
            self.exchange.reason = f"runner sent nothing for {self.runner.idle_timeout:g}s"
        self.connection.abort()
        self.client.abort("upstream idle")
        self._end()

    def _rearm(self, seconds: float, action: Any) -> None:
        self._cancel_timer()
        self._timer = self.clock.callLater(seconds, action)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _end(self, failure: _Failed | None = None) -> None:
        if self._ended:
            return
        self._ended = True
        if failure is None:
            self.over.callback(None)
        else:
            self.over.errback(failure)

    # IPushProducer, registered with the client: a slow client slows the runner read.

    def pauseProducing(self) -> None:
        self.connection.pause_reading()

    def resumeProducing(self) -> None:
        self.connection.resume_reading()

    def stopProducing(self) -> None:
        self.connection.abort()


@implementer(ITerminal)
class OllamaTerminal:
    """Proxies to one runner: to one of its hosts, each with persistent connections."""

    stores_body = False
    """The body streams to the runner; the chain runs request_body hooks on a collected one."""

    log = Logger(observer=level_gate)

    def __init__(self, runner: RunnerSettings, hosts: HostBalancer, clock: IReactorTime) -> None:
        self.runner = runner
        self.hosts = hosts
        self.clock = clock
        self.under_way = UnderWay()

    def start(self) -> None:
        """The gateway serves: the hosts' loaded models are read from now on."""
        self.hosts.start()

    def stop(self) -> Deferred[None]:
        """End the answers under way with a final error (their runner requests are closed
        with them), then stop probes and polls and close every host's connections (see
        ``ITerminal.stop``)."""
        self.under_way.end_all()
        return self.hosts.close()

    def retire(self) -> None:
        """A reload replaced this route and its exchanges are over: its hosts stay, as the
        registry kept across reloads holds them; it closes those no route uses any more."""
        self.under_way.end_all()

    def upstream_hosts(self) -> tuple[HostStatus, ...]:
        """Each host's state (health, ejections, requests under way, loaded models)."""
        return self.hosts.statuses()

    def not_ready_reasons(self) -> list[str]:
        """``runner NAME: no healthy host`` while every host is ejected."""
        return self.hosts.not_ready_reasons()

    async def handle(self, exchange: Exchange, client: IClientStream) -> None:
        """Send the request upstream and relay the response (see ``ITerminal``).

        A try that sent nothing upstream (the connect failed, or the connection closed before
        a byte was written) goes on to another host; a bodiless request whose reused
        connection turned out closed is sent once more. Nothing else is sent twice.
        """
        self.under_way.add(client)
        try:
            await self._handle(exchange, client)
        finally:
            self.under_way.discard(client)

    async def _handle(self, exchange: Exchange, client: IClientStream) -> None:
        exchange.upstream = self.runner.name
        model = exchange.model  # named by a filter that read the body; None when none did
        tried: list[UpstreamHost] = []
        stale_retried = False
        failure = Reject(502, f"runner {self.runner.name} is unreachable",
                         reason="no host to try")
        while (host := self.hosts.choose(model, tried)) is not None:
            try:
                connection = await self._connect(host, client)
            except _Failed as failed:
                tried.append(host)
                failure = failed.reject
                if client.gone:
                    break
                continue
            if connection is None:
                return
            try:
                if connection.lost:
                    host.failed("the connection closed before the request was sent")
                    raise _Failed(Reject(502, f"runner {self.runner.name} closed the connection",
                                         reason="connection closed before sending"), unsent=True)
                await self._exchange(connection, exchange, client,
                                     self._request_head(exchange, host.address))
                return
            except _Failed as failed:
                if failed.unsent:
                    tried.append(host)
                elif failed.stale and not stale_retried and not exchange.has_body:
                    stale_retried = True
                else:
                    raise failed.reject from None
                if client.gone:
                    raise failed.reject from None
                failure = failed.reject
                exchange.outcome = "ok"
            finally:
                host.release(connection)
        exchange.outcome = "timeout" if failure.status == 504 else "upstream_error"
        raise failure

    async def _connect(self, host: UpstreamHost,
                       client: IClientStream) -> UpstreamConnection | None:
        pending = host.acquire()
        client.when_gone(pending.cancel)
        try:
            return await pending
        except CancelledError:
            return None
        except net_error.TimeoutError:
            raise _Failed(Reject(504, f"runner {self.runner.name} did not accept the "
                                      f"connection in time", reason="connect timeout"),
                          unsent=True) from None
        except _CONNECT_FAILURES as e:
            raise _Failed(Reject(502, f"runner {self.runner.name} is unreachable",
                                 reason=f"connect failed: {type(e).__name__}"),
                          unsent=True) from None

    async def _exchange(self, connection: UpstreamConnection, exchange: Exchange,
                        client: IClientStream, head: bytes) -> None:
        relay = _ResponseRelay(self, connection, client, exchange)
        client.when_gone(relay.client_gone)
        exchange.upstream_sent_at = self.clock.seconds()
        if not exchange.has_body:
            connection.send_request(exchange.method, head, relay, "none")
        else:
            framing = "length" if exchange.content_length is not None else "chunked"
            connection.send_request(exchange.method, head, relay, framing)
            body = _RequestBody(connection, client, exchange, relay.request_progress)
            connection.transport.registerProducer(body, True)
            client.start_body(body)
        await relay.over

    def _request_head(self, exchange: Exchange, netloc: str) -> bytes:
        headers = exchange.upstream_headers
        headers.set("X-Forwarded-For", exchange.client_address)
        headers.set("X-Forwarded-Proto", "https" if exchange.secure else "http")
        host = exchange.headers.get("host")
        if host is not None:
            headers.set("X-Forwarded-Host", host)
        headers.set("X-Request-Id", exchange.request_id)
        target = exchange.upstream_path
        if exchange.query:
            target += "?" + exchange.query
        lines = [f"{exchange.method} {target} HTTP/1.1\r\nHost: {netloc}\r\n"]
        lines.extend(f"{name}: {value}\r\n" for name, value in headers)
        if exchange.content_length is None:
            lines.append("Transfer-Encoding: chunked\r\n")
        elif exchange.content_length or exchange.method in _BODY_METHODS:
            lines.append(f"Content-Length: {exchange.content_length}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")
