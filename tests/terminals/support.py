"""Shared parts of the Ollama terminal tests: fake runners, TLS clients, raw HTTP, audit tap."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import ollama
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol, wrapClientTLS
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers as TwistedHeaders
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS, IResponse
from zope.interface import implementer

from runnergw.tokens.key_generation import write_signing_keypair
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.fake_ollama import CountingSite, FakeOllama
from tests.helpers.gateway import RunningGateway, start_gateway

__all__ = [
    "AuditTap",
    "BytesProducer",
    "FakeRunner",
    "RawClient",
    "RawResponse",
    "fetch",
    "expired_token",
    "foreign_token",
    "generate_request",
    "in_thread_with",
    "ollama_client",
    "parse_response",
    "raw_connect",
    "raw_exchange",
    "start_fake",
    "start_proxy",
    "tls_agent",
    "unused_port",
]


@attrs.define
class FakeRunner:
    """A fake Ollama listening on 127.0.0.1, with its connection-counting site."""

    fake: FakeOllama
    site: CountingSite
    port: int

    def runner(self, path: str = "/local-ollama", name: str = "local",
               **extra: Any) -> dict[str, Any]:
        """The ``runners[]`` entry that points at this fake."""
        return {"name": name, "path": path, "host": f"127.0.0.1:{self.port}", **extra}


def start_fake(testcase: TestCase) -> FakeRunner:
    """Serve a fake Ollama; at cleanup, wait until every connection to it has closed."""
    fake = FakeOllama(reactor)
    site = CountingSite(fake)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    testcase.addCleanup(site.all_closed)
    testcase.addCleanup(port.stopListening)
    return FakeRunner(fake=fake, site=site, port=port.getHost().port)


def start_proxy(testcase: TestCase, path: str = "/local-ollama", *,
                server: dict[str, Any] | None = None,
                **runner: Any) -> tuple[FakeRunner, RunningGateway]:
    """One fake Ollama behind a TLS gateway under ``path``."""
    upstream = start_fake(testcase)
    gateway = start_gateway(testcase, [upstream.runner(path, **runner)], server=server)
    return upstream, gateway


async def unused_port() -> int:
    """A loopback port that nothing listens on any more."""
    port = reactor.listenTCP(0, Factory.forProtocol(Protocol), interface="127.0.0.1")
    number: int = port.getHost().port
    await port.stopListening()
    return number


def _trust_root(gateway: RunningGateway) -> Certificate:
    assert gateway.ca_path is not None
    return Certificate.loadPEM(Path(gateway.ca_path).read_bytes())


@implementer(IPolicyForHTTPS)
class _TrustGatewayCA:
    """Verify the gateway's certificate against the test CA."""

    def __init__(self, root: Certificate) -> None:
        self._root = root

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        return optionsForClientTLS(hostname.decode("ascii"), trustRoot=self._root)


def tls_agent(testcase: TestCase, gateway: RunningGateway) -> Agent:
    """An ``Agent`` that trusts the gateway's CA; its idle connections close at cleanup."""
    pool = HTTPConnectionPool(reactor, persistent=True)
    testcase.addCleanup(pool.closeCachedConnections)
    return Agent(reactor, contextFactory=_TrustGatewayCA(_trust_root(gateway)), pool=pool)


def _headers(headers: dict[str, str] | None) -> TwistedHeaders:
    result = TwistedHeaders()
    for name, value in (headers or {}).items():
        result.addRawHeader(name.encode("latin-1"), value.encode("latin-1"))
    return result


async def fetch(agent: Agent, method: str, url: str, headers: dict[str, str] | None = None,
                body: IBodyProducer | None = None) -> tuple[IResponse, bytes]:
    """Send a request and read the whole response body."""
    response = await agent.request(method.encode("ascii"), url.encode("ascii"),
                                   _headers(headers), body)
    return response, await readBody(response)


@implementer(IBodyProducer)
class BytesProducer:
    """Writes ``data`` in pieces as the consumer asks; ``chunked`` hides the length."""

    def __init__(self, data: bytes, *, chunked: bool = False, piece: int = 256 * 1024) -> None:
        from twisted.web.iweb import UNKNOWN_LENGTH

        self._data = memoryview(data)
        self._piece = piece
        self._offset = 0
        self._paused = False
        self._consumer: Any = None
        self._done: Deferred[None] | None = None
        self.length = UNKNOWN_LENGTH if chunked else len(data)

    def startProducing(self, consumer: Any) -> Deferred[None]:
        self._consumer = consumer
        done: Deferred[None] = Deferred()
        self._done = done
        self._produce()
        return done

    def _produce(self) -> None:
        while not self._paused and self._done is not None:
            if self._offset >= len(self._data):
                done, self._done = self._done, None
                done.callback(None)
                return
            end = self._offset + self._piece
            piece = bytes(self._data[self._offset:end])
            self._offset = end
            self._consumer.write(piece)

    def pauseProducing(self) -> None:
        self._paused = True

    def resumeProducing(self) -> None:
        self._paused = False
        reactor.callLater(0, self._produce)

    def stopProducing(self) -> None:
        self._done = None


class RawClient(Protocol):
    """Collects every byte the gateway sends on one TLS connection."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: Deferred[None] = Deferred()
        self._waiting: list[tuple[bytes, Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        still = []
        for needle, waiter in self._waiting:
            if needle in self.data:
                waiter.callback(self.data)
            else:
                still.append((needle, waiter))
        self._waiting = still

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        waiting, self._waiting = self._waiting, []
        for needle, waiter in waiting:
            waiter.errback(AssertionError(f"connection closed before {needle!r} arrived; "
                                          f"received {self.data!r}"))
        self.lost.callback(None)

    def send(self, data: bytes) -> None:
        """Write raw bytes to the gateway."""
        self.transport.write(data)

    def wait_for(self, needle: bytes) -> Deferred[bytes]:
        """Fires with everything received so far once ``needle`` has arrived."""
        if needle in self.data:
            return succeed(self.data)
        waiter: Deferred[bytes] = Deferred()
        self._waiting.append((needle, waiter))
        return waiter

    def wait_for_chunked_end(self) -> Deferred[bytes]:
        """Fires once the last chunk of a chunked response has arrived.

        The CRLF before ``0`` tells it from a header that happens to end in ``0``.
        """
        return self.wait_for(b"\r\n0\r\n\r\n")

    def close(self) -> Deferred[None]:
        """Drop the connection (no TLS goodbye) and wait until it is closed."""
        if not self.lost.called:
            self.transport.abortConnection()
        return self.lost


async def raw_connect(testcase: TestCase, gateway: RunningGateway) -> RawClient:
    """Open a TLS connection to the gateway; it is dropped at cleanup if still open."""
    endpoint = wrapClientTLS(optionsForClientTLS("127.0.0.1", trustRoot=_trust_root(gateway)),
                             TCP4ClientEndpoint(reactor, "127.0.0.1", gateway.port))
    client = await connectProtocol(endpoint, RawClient())
    testcase.addCleanup(client.close)
    return client


@attrs.frozen
class RawResponse:
    """One HTTP/1.1 response as it came off the wire."""

    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    complete: bool
    """False when the connection ended before the body did."""

    def header(self, name: str) -> str | None:
        """The first value of ``name``."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def names(self) -> set[str]:
        """Every header name, lower-case."""
        return {key.lower() for key, _ in self.headers}


def parse_response(data: bytes) -> RawResponse:
    """Parse the first response in ``data``, decoding a chunked or fixed-length body."""
    head, separator, rest = data.partition(b"\r\n\r\n")
    if not separator:
        raise AssertionError(f"no complete response head in {data!r}")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = tuple(
        (name, value.strip()) for name, _, value in (line.partition(":") for line in lines[1:])
    )
    response = RawResponse(status, headers, b"", False)
    if (response.header("transfer-encoding") or "").lower() == "chunked":
        body, complete = _dechunk(rest)
        return attrs.evolve(response, body=body, complete=complete)
    length = response.header("content-length")
    if length is not None:
        return attrs.evolve(response, body=rest[:int(length)], complete=len(rest) >= int(length))
    return attrs.evolve(response, body=rest, complete=True)


def _dechunk(data: bytes) -> tuple[bytes, bool]:
    body = b""
    while True:
        line, separator, data = data.partition(b"\r\n")
        if not separator:
            return body, False
        size = int(line.split(b";")[0], 16)
        if size == 0:
            return body, data.startswith(b"\r\n")
        if len(data) < size + 2:
            return body + data[:size], False
        body, data = body + data[:size], data[size + 2:]


async def raw_exchange(testcase: TestCase, gateway: RunningGateway, head: bytes,
                       body: bytes = b"") -> RawResponse:
    """Send one request (its head must say ``Connection: close``) and parse the answer."""
    client = await raw_connect(testcase, gateway)
    client.send(head + body)
    await client.lost
    return parse_response(client.data)


class AuditTap:
    """Lets a test wait until the gateway has written its audit lines (the file is read after)."""

    def __init__(self, testcase: TestCase, gateway: RunningGateway) -> None:
        audit_log = gateway.service.parts.audit_log
        original = audit_log.write
        self.count = 0
        self._waiting: list[tuple[int, Deferred[None]]] = []

        def write(record: Any) -> None:
            original(record)
            self.count += 1
            still = []
            for count, waiter in self._waiting:
                if self.count >= count:
                    waiter.callback(None)
                else:
                    still.append((count, waiter))
            self._waiting = still

        testcase.patch(audit_log, "write", write)

    def written(self, count: int = 1) -> Deferred[None]:
        """Fires once ``count`` audit lines have been written in all."""
        if self.count >= count:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._waiting.append((count, waiter))
        return waiter


def ollama_client(gateway: RunningGateway, prefix: str, token: str) -> ollama.Client:
    """The official client, trusting the gateway's CA and sending the bearer token."""
    assert gateway.ca_path is not None
    return ollama.Client(
        host=gateway.url + prefix,
        verify=ssl.create_default_context(cafile=gateway.ca_path),
        headers={"Authorization": "Bearer " + token},
        trust_env=False,
        timeout=10,
    )


def in_thread_with(client: ollama.Client, call: Callable[[ollama.Client], Any]) -> Any:
    """Run ``call(client)`` and close the client's connections, both in the calling thread."""
    try:
        return call(client)
    finally:
        client._client.close()


def generate_request(gateway: RunningGateway, prefix: str = "/local-ollama", *,
                     prompt: str = "Hi", extra_headers: bytes = b"", **options: Any) -> bytes:
    """A raw streaming ``POST …/api/generate`` with a valid token (``options`` are the fake's)."""
    body = json.dumps({"model": "llama3.2:1b", "prompt": prompt, "options": options}).encode()
    return (b"POST " + prefix.encode() + b"/api/generate HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + gateway.token().encode() + b"\r\n" + extra_headers +
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def expired_token(gateway: RunningGateway) -> str:
    """A token signed with the gateway's key that expired an hour ago."""
    key = load_signing_key(gateway.key_path.read_bytes(), 4)
    return mint_token(key, subject="tester", role=None, lifetime=60, now=time.time() - 3660)


def foreign_token(testcase: TestCase) -> str:
    """A well-formed, unexpired token signed with a key the gateway does not know."""
    directory = Path(testcase.mktemp())
    directory.mkdir(parents=True)
    write_signing_keypair(directory / "other.key", directory / "other.pub")
    key = load_signing_key((directory / "other.key").read_bytes(), 4)
    return mint_token(key, subject="tester", role=None, lifetime=3600, now=time.time())
