"""A line echo server behind a server TLS creator, and the clients that talk to it.

``TLSTestCase`` gives each test a certificate authority (:mod:`tests.helpers.certs`), a
server listening on 127.0.0.1 port 0 with TLS from any ``IOpenSSLServerConnectionCreator``,
a Twisted TLS client that trusts only the root, and a standard-library ``ssl`` client (run in
a thread) whose context a test can narrow to old versions, ciphers or ALPN offers.
"""

from __future__ import annotations

import socket
import ssl
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import (
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    connectProtocol,
    wrapClientTLS,
)
from twisted.internet.interfaces import (
    IHandshakeListener,
    IListeningPort,
    IProtocolNegotiationFactory,
    IReactorTCP,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.internet.threads import deferToThread
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer

from tests.helpers.certs import CA, IssuedCert, fingerprint, make_ca

__all__ = ["EchoServer", "LineClient", "StdlibResult", "TLSTestCase", "TrackingFactory"]


class EchoServer(LineOnlyReceiver):
    """Answer every line with ``echo <line>`` and report when the connection ends."""

    factory: TrackingFactory

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        """Echo the line back."""
        self.sendLine(b"echo " + line)

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Fire ``lost``."""
        self.lost.callback(None)


@implementer(IProtocolNegotiationFactory)
class TrackingFactory(Factory):
    """Build echo servers, keep them for cleanup, and advertise h2 like twisted.web does."""

    protocol = EchoServer

    def __init__(self) -> None:
        self.servers: list[EchoServer] = []

    def buildProtocol(self, addr: Any) -> EchoServer:
        """Build and remember a server protocol."""
        server = EchoServer()
        server.factory = self
        self.servers.append(server)
        return server

    def acceptableProtocols(self) -> list[bytes]:
        """Advertise h2 before http/1.1, as twisted.web's Site does when h2 is installed."""
        return [b"h2", b"http/1.1"]


@implementer(IHandshakeListener)
class LineClient(Protocol):
    """Send lines and collect the server's line replies over a TLS transport."""

    def __init__(self) -> None:
        self.handshake: Deferred[None] = Deferred()
        self.lost: Deferred[None] = Deferred()
        self._buffer = b""
        self._waiting: list[Deferred[bytes]] = []

    def handshakeCompleted(self) -> None:
        """Fire ``handshake``."""
        self.handshake.callback(None)

    def dataReceived(self, data: bytes) -> None:
        """Hand each complete line to the oldest waiting request."""
        self._buffer += data
        while b"\r\n" in self._buffer and self._waiting:
            line, self._buffer = self._buffer.split(b"\r\n", 1)
            self._waiting.pop(0).callback(line)

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Fail whatever is still waiting and fire ``lost``."""
        failure = reason if reason is not None else Failure(ConnectionError("lost"))
        if not self.handshake.called:
            self.handshake.errback(failure)
        waiting, self._waiting = self._waiting, []
        for request in waiting:
            request.errback(failure)
        self.lost.callback(None)

    def request(self, line: bytes) -> Deferred[bytes]:
        """Send one line and return a Deferred firing with the reply line."""
        reply: Deferred[bytes] = Deferred()
        self._waiting.append(reply)
        self.transport.write(line + b"\r\n")
        return reply

    def peer_fingerprint(self) -> str:
        """Return the SHA-256 fingerprint of the certificate the server presented."""
        return fingerprint(self.transport.getPeerCertificate().to_cryptography())


@attrs.frozen
class StdlibResult:
    """What a standard-library TLS client saw."""

    version: str | None
    cipher: str
    alpn: str | None
    peer_fingerprint: str
    reply: bytes


def _stdlib_exchange(context: ssl.SSLContext, port: int, server_hostname: str) -> StdlibResult:
    """Connect with the ``ssl`` module (blocking; run in a thread) and send one line."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with context.wrap_socket(raw, server_hostname=server_hostname) as tls:
            tls.sendall(b"ping\r\n")
            reply = b""
            while b"\r\n" not in reply:
                chunk = tls.recv(4096)
                if not chunk:
                    break
                reply += chunk
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return StdlibResult(
                version=tls.version(),
                cipher=tls.cipher()[0],
                alpn=tls.selected_alpn_protocol(),
                peer_fingerprint=fingerprint(x509.load_der_x509_certificate(der)),
                reply=reply.split(b"\r\n", 1)[0],
            )


class TLSTestCase(TestCase):
    """Shared set-up: a CA, a live certificate location, a server and clients."""

    timeout = 30

    def setUp(self) -> None:
        """Create a CA and the paths the server will read."""
        from twisted.internet import reactor

        self.reactor: IReactorTCP = reactor
        self.directory = self.mktemp()
        self.ca: CA = make_ca(self.directory)
        self.live_certificate = str(Path(self.directory) / "fullchain.cer")
        self.live_key = str(Path(self.directory) / "server.key")

    def issue(self, name: str, **kwargs: Any) -> IssuedCert:
        """Issue a certificate from the test CA into the test directory."""
        return self.ca.issue(self.directory, name, **kwargs)

    async def serve(self, creator: Any) -> int:
        """Listen on 127.0.0.1 with TLS from ``creator``; return the port number."""
        factory = TrackingFactory()
        endpoint = TCP4ServerEndpoint(self.reactor, 0, interface="127.0.0.1")
        port: IListeningPort = await endpoint.listen(TLSMemoryBIOFactory(creator, False, factory))

        async def stop() -> None:
            await port.stopListening()
            for server in factory.servers:
                if not server.lost.called:
                    server.transport.abortConnection()
            await gatherResults([server.lost for server in factory.servers])

        self.addCleanup(lambda: Deferred.fromCoroutine(stop()))
        return port.getHost().port

    async def connect(self, port: int, hostname: str = "localhost") -> LineClient:
        """Connect a Twisted TLS client trusting only the root; wait for the handshake."""
        trust = Certificate.loadPEM(Path(self.ca.ca_path).read_bytes())
        endpoint = wrapClientTLS(
            optionsForClientTLS(hostname, trustRoot=trust),
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", port),
        )
        client = await connectProtocol(endpoint, LineClient())

        def close() -> Deferred[None]:
            if not client.lost.called:
                client.transport.loseConnection()
            return client.lost

        self.addCleanup(close)
        await client.handshake
        return client

    def client_context(
        self, configure: Callable[[ssl.SSLContext], None] | None = None
    ) -> ssl.SSLContext:
        """Return a standard-library client context trusting the root only."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(self.ca.ca_path)
        if configure is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                configure(context)
        return context

    def stdlib_exchange(
        self, context: ssl.SSLContext, port: int, server_hostname: str = "localhost"
    ) -> Deferred[StdlibResult]:
        """Run a standard-library client exchange in a thread."""
        return deferToThread(_stdlib_exchange, context, port, server_hostname)
