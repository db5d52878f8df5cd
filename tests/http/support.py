"""Shared pieces for driving ``GatewayHTTPProtocol`` in memory: stub gateway and terminal,
recording body consumer, a response parser, bearer tokens and a test case base class."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable, Sequence
from http import HTTPStatus
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer

from runnergw.chain.exchange import Exchange, exchange_for
from runnergw.chain.interfaces import IFilter, ITerminal
from runnergw.chain.route import Route, Router, error_body_ollama
from runnergw.chain.runner import ChainRunner
from runnergw.filters.token import TokenFilter
from runnergw.http.factory import GatewayHTTPFactory
from runnergw.http.head import HeadLimits
from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream
from runnergw.http.server import GatewayHTTPProtocol
from runnergw.http.timers import ConnectionTimeouts
from runnergw.tokens.key_generation import generate_signing_keypair
from runnergw.tokens.minting import mint_token
from runnergw.tokens.public_keys import load_public_keys
from runnergw.tokens.signing_keys import load_signing_key
from runnergw.tokens.verifier import TokenVerifier

__all__ = [
    "NOW",
    "Call",
    "RecordingConsumer",
    "Response",
    "ServerTestCase",
    "StubGateway",
    "StubTerminal",
    "build_gateway",
    "mint",
    "parse_responses",
    "token_verifier",
]

NOW = 1_700_000_000.0
"""Wall-clock time of the token verifier and of minted tokens."""


# Responses


@attrs.frozen
class Response:
    """One response as a client reads it off the wire."""

    status: int
    reason: str
    headers: Headers
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON."""
        return json.loads(self.body)


def _dechunk(data: bytes) -> tuple[bytes, bytes]:
    """Decode a chunked body at the start of ``data``; return it and what follows."""
    body = b""
    while True:
        line_end = data.index(b"\r\n")
        size = int(data[:line_end], 16)
        data = data[line_end + 2 :]
        if size == 0:
            if not data.startswith(b"\r\n"):
                raise AssertionError(f"chunked response without its final CRLF: {data!r}")
            return body, data[2:]
        body += data[:size]
        if data[size : size + 2] != b"\r\n":
            raise AssertionError(f"chunk not followed by CRLF: {data!r}")
        data = data[size + 2 :]


def parse_responses(data: bytes, methods: Sequence[str] = ()) -> list[Response]:
    """Split what the server wrote into responses (``100 Continue`` included).

    Args:
        data: everything written to the transport.
        methods: the request method of each final response in order (default ``GET``), so
            that responses to ``HEAD`` are read without a body.
    """
    responses: list[Response] = []
    finals = 0
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            raise AssertionError(f"incomplete response head: {data!r}")
        lines = data[:end].decode("latin-1").split("\r\n")
        data = data[end + 4 :]
        version, status_text, reason = lines[0].split(" ", 2)
        if version != "HTTP/1.1" or not status_text.isdigit():
            raise AssertionError(f"malformed status line: {lines[0]!r}")
        fields = []
        for line in lines[1:]:
            name, separator, value = line.partition(": ")
            if not separator:
                raise AssertionError(f"malformed response header: {line!r}")
            fields.append((name, value))
        headers = Headers(fields)
        status = int(status_text)
        if status < 200:
            responses.append(Response(status, reason, headers, b""))
            continue
        method = methods[finals] if finals < len(methods) else "GET"
        finals += 1
        if method == "HEAD" or status in (204, 304):
            body = b""
        elif "content-length" in headers:
            length = int(headers.get("content-length") or "")
            if len(data) < length:
                raise AssertionError(f"response body shorter than its Content-Length: {data!r}")
            body, data = data[:length], data[length:]
        elif headers.get("transfer-encoding") == "chunked":
            body, data = _dechunk(data)
        else:
            body, data = data, b""
        responses.append(Response(status, reason, headers, body))
    return responses


# The gateway side


class RecordingConsumer:
    """A request body consumer that keeps what it is given."""

    def __init__(
        self,
        on_done: Callable[[], object] | None = None,
        on_data: Callable[[bytes], object] | None = None,
    ) -> None:
        self.pieces: list[bytes] = []
        self.done = False
        self.failure: Exception | None = None
        self._on_done = on_done
        self._on_data = on_data

    @property
    def data(self) -> bytes:
        """Every body byte received so far."""
        return b"".join(self.pieces)

    def body_data(self, data: bytes) -> None:
        """Keep a piece of the body."""
        if self.done or self.failure is not None:
            raise AssertionError("body data after the end of the body")
        self.pieces.append(data)
        if self._on_data is not None:
            self._on_data(data)

    def body_done(self) -> None:
        """The whole body is in."""
        if self.done or self.failure is not None:
            raise AssertionError("body ended twice")
        self.done = True
        if self._on_done is not None:
            self._on_done()

    def body_failed(self, reason: Exception) -> None:
        """The body will not be complete."""
        if self.done or self.failure is not None:
            raise AssertionError("body failed after its end")
        self.failure = reason


@attrs.define(eq=False)
class Call:
    """One exchange handed to a stub: the test decides what happens next."""

    exchange: Exchange
    client: IClientStream
    send_head: Callable[[int, Headers, int | None], None]
    finished: Deferred[None] = attrs.field(factory=Deferred)
    consumer: RecordingConsumer | None = None

    def read_body(
        self,
        on_done: Callable[[], object] | None = None,
        on_data: Callable[[bytes], object] | None = None,
    ) -> RecordingConsumer:
        """Ask the client stream for the body."""
        self.consumer = RecordingConsumer(on_done, on_data)
        self.client.start_body(self.consumer)
        return self.consumer

    def respond(
        self,
        status: int = 200,
        body: bytes = b"ok",
        headers: Iterable[tuple[str, str]] = (),
        length: int | None | str = "auto",
    ) -> None:
        """Send a whole response and end the exchange."""
        self.send_head(status, Headers(headers), len(body) if length == "auto" else length)
        self.client.write(body)
        self.client.finish()
        self.end()

    def end(self) -> None:
        """Fire the exchange's Deferred (the gateway or terminal is done)."""
        if not self.finished.called:
            self.finished.callback(None)

    def echo(self) -> None:
        """Read the whole body, then answer 200 with it (at once when there is none)."""

        def reply() -> None:
            body = self.consumer.data if self.consumer is not None else b""
            self.respond(200, b"%s %s:%s" % (self.exchange.method.encode(),
                                            self.exchange.path.encode(), body))

        if self.exchange.has_body:
            self.read_body(on_done=reply)
        else:
            reply()


class StubGateway:
    """Stands in for ``ChainRunner``: records each exchange; echoes it when ``echo`` is set."""

    def __init__(self, echo: bool = False) -> None:
        self.calls: list[Call] = []
        self.echo = echo

    def handle(self, stream: IClientStream) -> Deferred[None]:
        """Record the exchange and return the Deferred the test fires."""
        call = Call(exchange_for(stream), stream, stream.send_head)
        self.calls.append(call)
        if self.echo:
            call.echo()
        return call.finished


@implementer(ITerminal)
class StubTerminal:
    """A route terminal that records each exchange; echoes it when ``echo`` is set."""

    def __init__(self, echo: bool = False) -> None:
        self.calls: list[Call] = []
        self.echo = echo

    def handle(self, exchange: Exchange, client: IClientStream) -> Deferred[None]:
        """Record the exchange and return the Deferred the test fires."""
        call = Call(exchange, client, client.send_head)
        self.calls.append(call)
        if self.echo:
            call.echo()
        return call.finished

    def stop(self) -> Deferred[None]:
        """Nothing to stop."""
        return succeed(None)


# Tokens and a real gateway


@functools.cache
def _key_files() -> tuple[bytes, bytes]:
    """One Ed25519 key pair for the whole test run."""
    return generate_signing_keypair()


def token_verifier() -> TokenVerifier:
    """A v4.public verifier whose clock reads ``NOW``."""
    return TokenVerifier(
        versions=("v4",),
        local_keys={},
        public_keys={"v4": load_public_keys(_key_files()[1], 4)},
        leeway=30.0,
        issuer=None,
        audience=None,
        clock=lambda: NOW,
    )


def mint(subject: str = "alice", now: float = NOW, lifetime: float = 3600.0) -> str:
    """A v4.public token the verifier from ``token_verifier`` accepts."""
    key = load_signing_key(_key_files()[0], 4)
    return mint_token(key, subject=subject, role=None, lifetime=lifetime, now=now)


def build_gateway(
    terminal: StubTerminal,
    *,
    max_body_size: int = 1 << 30,
    filters: Sequence[IFilter] | None = None,
    error_body: Callable[[int, str], bytes] = error_body_ollama,
) -> ChainRunner:
    """A real ``ChainRunner``: one route for every path, guarded by a real ``TokenFilter``."""
    chain = tuple(filters) if filters is not None else (TokenFilter(token_verifier()),)
    route = Route("ollama", (), chain, terminal, max_body_size=max_body_size,
                  error_body=error_body)
    return ChainRunner(Router([route], Route("", (), (), None)))


# Test case base


class ServerTestCase(SynchronousTestCase):
    """A fake clock, a stub gateway, in-memory connections and log capture.

    Every test fails if anything logged a failure (a traceback).
    """

    limits = HeadLimits()
    timeouts = ConnectionTimeouts(header=10.0, read=30.0, write=30.0, keep_alive=75.0)

    def setUp(self) -> None:
        """Create the clock, the stub gateway and the log capture."""
        self.clock = MemoryReactorClock()
        self.clock.advance(NOW)
        self.gateway: Any = StubGateway()
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.addCleanup(self.assertNoTraceback)

    def assertNoTraceback(self) -> None:
        """Nothing was logged with a failure attached."""
        failures = [event for event in self.events if "log_failure" in event]
        self.assertEqual(failures, [])

    def connect(
        self,
        gateway: Any = None,
        *,
        limits: HeadLimits | None = None,
        timeouts: ConnectionTimeouts | None = None,
    ) -> tuple[GatewayHTTPProtocol, StringTransport]:
        """A server protocol connected to an in-memory transport."""
        factory = GatewayHTTPFactory(
            gateway if gateway is not None else self.gateway,
            self.clock,
            limits=limits or self.limits,
            timeouts=timeouts or self.timeouts,
        )
        protocol = factory.buildProtocol(None)
        transport = StringTransport()
        protocol.makeConnection(transport)
        return protocol, transport

    def request(self, data: bytes, **options: Any) -> tuple[GatewayHTTPProtocol, StringTransport]:
        """Connect and send ``data`` in one piece."""
        protocol, transport = self.connect(**options)
        protocol.dataReceived(data)
        return protocol, transport

    def assertStatusLine(self, transport: StringTransport, status: int) -> None:
        """The server's first (or only) response starts with this exact status line."""
        line = f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n".encode("ascii")
        self.assertEqual(transport.value()[: len(line)], line)

    def assertRefused(self, transport: StringTransport, status: int) -> Response:
        """One JSON error response with ``Connection: close``, and the connection closes."""
        self.assertStatusLine(transport, status)
        responses = parse_responses(transport.value())
        self.assertEqual(len(responses), 1, responses)
        response = responses[0]
        self.assertEqual(response.headers.get("connection"), "close")
        self.assertEqual(response.headers.get("content-type"), "application/json; charset=utf-8")
        error = response.json()
        self.assertEqual(list(error), ["error"])
        self.assertIsInstance(error["error"], str)
        self.assertTrue(error["error"])
        self.assertTrue(transport.disconnecting, "the connection stayed open")
        return response

    def assertOpen(self, transport: StringTransport) -> None:
        """The connection is still open."""
        self.assertFalse(transport.disconnecting, "the connection was closed")
