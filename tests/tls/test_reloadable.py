"""Serving TLS with runnergw.tls: real handshakes on 127.0.0.1 with generated certificates."""

from __future__ import annotations

import shutil
import socket
import ssl
import warnings
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import serialization
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
    IOpenSSLServerConnectionCreator,
    IProtocolNegotiationFactory,
    IReactorTCP,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, CertificateOptions, optionsForClientTLS
from twisted.internet.threads import deferToThread
from twisted.logger import capturedLogs, formatEvent
from twisted.protocols.basic import LineOnlyReceiver
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from runnergw.tls.reloadable import (
    ReloadableServerTLS,
    TLSConfigError,
    certificate_not_after,
    load_certificate_options,
)
from tests.helpers.certs import CA, IssuedCert, fingerprint, make_ca

__all__ = [
    "CertificateLoadingTests",
    "HandshakeTests",
    "ReloadTests",
]

_TLS12_AEAD_CIPHERS = frozenset(
    {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-RSA-CHACHA20-POLY1305",
    }
)


class _EchoServer(LineOnlyReceiver):
    """Answer every line with ``echo <line>`` and report when the connection ends."""

    factory: _TrackingFactory

    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def lineReceived(self, line: bytes) -> None:
        """Echo the line back."""
        self.sendLine(b"echo " + line)

    def connectionLost(self, reason: Failure | None = None) -> None:
        """Fire ``lost``."""
        self.lost.callback(None)


@implementer(IProtocolNegotiationFactory)
class _TrackingFactory(Factory):
    """Build echo servers, keep them for cleanup, and advertise h2 like twisted.web does."""

    protocol = _EchoServer

    def __init__(self) -> None:
        self.servers: list[_EchoServer] = []

    def buildProtocol(self, addr: Any) -> _EchoServer:
        """Build and remember a server protocol."""
        server = _EchoServer()
        server.factory = self
        self.servers.append(server)
        return server

    def acceptableProtocols(self) -> list[bytes]:
        """Advertise h2 before http/1.1, as twisted.web's Site does when h2 is installed."""
        return [b"h2", b"http/1.1"]


@implementer(IHandshakeListener)
class _LineClient(Protocol):
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
class _StdlibResult:
    """What a standard-library TLS client saw."""

    version: str | None
    cipher: str
    alpn: str | None
    peer_fingerprint: str
    reply: bytes


def _stdlib_exchange(context: ssl.SSLContext, port: int, server_hostname: str) -> _StdlibResult:
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
            return _StdlibResult(
                version=tls.version(),
                cipher=tls.cipher()[0],
                alpn=tls.selected_alpn_protocol(),
                peer_fingerprint=fingerprint(x509.load_der_x509_certificate(der)),
                reply=reply.split(b"\r\n", 1)[0],
            )


def _install(source: IssuedCert, certificate_path: str, key_path: str) -> None:
    """Copy an issued certificate's files over the paths the server reads."""
    shutil.copyfile(source.fullchain_path, certificate_path)
    shutil.copyfile(source.key_path, key_path)


class _TLSTestCase(TestCase):
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
        factory = _TrackingFactory()
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

    async def connect(self, port: int, hostname: str = "localhost") -> _LineClient:
        """Connect a Twisted TLS client trusting only the root; wait for the handshake."""
        trust = Certificate.loadPEM(Path(self.ca.ca_path).read_bytes())
        endpoint = wrapClientTLS(
            optionsForClientTLS(hostname, trustRoot=trust),
            TCP4ClientEndpoint(self.reactor, "127.0.0.1", port),
        )
        client = await connectProtocol(endpoint, _LineClient())

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
    ) -> Deferred[_StdlibResult]:
        """Run a standard-library client exchange in a thread."""
        return deferToThread(_stdlib_exchange, context, port, server_hostname)


class HandshakeTests(_TLSTestCase):
    """Clients complete handshakes only with modern TLS and the served chain."""

    async def test_client_trusting_ca_gets_reply(self) -> None:
        """A client that trusts the CA connects by IP address and gets the server's reply."""
        issued = self.issue("server")
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))
        client = await self.connect(port, hostname="127.0.0.1")
        self.assertEqual(await client.request(b"hello"), b"echo hello")
        self.assertEqual(client.peer_fingerprint(), issued.fingerprint)

    async def test_default_client_negotiates_tls13(self) -> None:
        """A current client negotiates TLS 1.3 and gets the reply."""
        issued = self.issue("server")
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))
        result = await self.stdlib_exchange(self.client_context(), port)
        self.assertEqual(result.version, "TLSv1.3")
        self.assertEqual(result.reply, b"echo ping")

    async def test_tls12_client_gets_aead_cipher(self) -> None:
        """A TLS 1.2-only client connects with an ECDHE AEAD cipher."""
        issued = self.issue("server")
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))

        def tls12(context: ssl.SSLContext) -> None:
            context.maximum_version = ssl.TLSVersion.TLSv1_2

        result = await self.stdlib_exchange(self.client_context(tls12), port)
        self.assertEqual(result.version, "TLSv1.2")
        self.assertIn(result.cipher, _TLS12_AEAD_CIPHERS)
        self.assertEqual(result.reply, b"echo ping")

    async def test_tls12_cbc_only_client_refused(self) -> None:
        """A TLS 1.2 client offering only CBC ciphers cannot connect."""
        issued = self.issue("server")
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))

        def cbc_only(context: ssl.SSLContext) -> None:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0")

        await self.assertFailure(
            self.stdlib_exchange(self.client_context(cbc_only), port), ssl.SSLError, OSError
        )

    async def test_tls11_client_refused(self) -> None:
        """A client that speaks at most TLS 1.1 cannot connect."""
        issued = self.issue("server")
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))

        def tls11(context: ssl.SSLContext) -> None:
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1_1
            context.set_ciphers("ALL:@SECLEVEL=0")

        await self.assertFailure(
            self.stdlib_exchange(self.client_context(tls11), port), ssl.SSLError, OSError
        )

    async def test_tls10_client_refused(self) -> None:
        """A client that speaks only TLS 1.0 cannot connect."""
        issued = self.issue("server")
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))

        def tls10(context: ssl.SSLContext) -> None:
            context.minimum_version = ssl.TLSVersion.TLSv1
            context.maximum_version = ssl.TLSVersion.TLSv1
            context.set_ciphers("ALL:@SECLEVEL=0")

        await self.assertFailure(
            self.stdlib_exchange(self.client_context(tls10), port), ssl.SSLError, OSError
        )

    async def test_intermediate_is_sent(self) -> None:
        """The server sends its intermediate, so a client trusting only the root verifies it."""
        issued = self.issue("server")
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))
        client = await self.connect(port)
        chain = client.transport.getHandle().get_peer_cert_chain()
        self.assertEqual(
            [fingerprint(certificate.to_cryptography()) for certificate in chain],
            [issued.fingerprint, fingerprint(self.ca.intermediate)],
        )
        self.assertEqual(await client.request(b"chain"), b"echo chain")

    async def test_alpn_selects_http11_over_h2(self) -> None:
        """A client offering h2 and http/1.1 gets http/1.1 even when the app factory lists h2."""
        issued = self.issue("server")
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))

        def offer_both(context: ssl.SSLContext) -> None:
            context.set_alpn_protocols(["h2", "http/1.1"])

        result = await self.stdlib_exchange(self.client_context(offer_both), port)
        self.assertEqual(result.alpn, "http/1.1")

    async def test_alpn_never_agrees_to_h2(self) -> None:
        """A client offering only h2 connects without any ALPN protocol agreed."""
        issued = self.issue("server")
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))

        def offer_h2(context: ssl.SSLContext) -> None:
            context.set_alpn_protocols(["h2"])

        result = await self.stdlib_exchange(self.client_context(offer_h2), port)
        self.assertIsNone(result.alpn)
        self.assertEqual(result.reply, b"echo ping")

    async def test_rsa_key_serves(self) -> None:
        """An RSA certificate with a PKCS#1 key serves clients like an EC one."""
        issued = self.issue("rsa-server", key_type="rsa", key_format="traditional")
        self.assertIn(b"BEGIN RSA PRIVATE KEY", Path(issued.key_path).read_bytes())
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))
        client = await self.connect(port)
        self.assertEqual(await client.request(b"rsa"), b"echo rsa")
        self.assertEqual(client.peer_fingerprint(), issued.fingerprint)

        def tls12(context: ssl.SSLContext) -> None:
            context.maximum_version = ssl.TLSVersion.TLSv1_2

        result = await self.stdlib_exchange(self.client_context(tls12), port)
        self.assertTrue(result.cipher.startswith("ECDHE-RSA-"), result.cipher)

    async def test_sec1_ec_key_serves(self) -> None:
        """An EC key in SEC1 form (BEGIN EC PRIVATE KEY, as acme.sh writes) serves clients."""
        issued = self.issue("sec1-server", key_format="traditional")
        self.assertIn(b"BEGIN EC PRIVATE KEY", Path(issued.key_path).read_bytes())
        port = await self.serve(ReloadableServerTLS(issued.fullchain_path, issued.key_path))
        client = await self.connect(port)
        self.assertEqual(await client.request(b"sec1"), b"echo sec1")

    async def test_plain_options_serve(self) -> None:
        """The options from load_certificate_options serve clients on their own too."""
        issued = self.issue("server")
        options = load_certificate_options(issued.fullchain_path, issued.key_path)
        self.assertIsInstance(options, CertificateOptions)
        port = await self.serve(options)
        client = await self.connect(port)
        self.assertEqual(await client.request(b"plain"), b"echo plain")

    def test_provides_server_connection_creator(self) -> None:
        """The reloadable creator is accepted by TLSMemoryBIOFactory as a server creator."""
        issued = self.issue("server")
        creator = ReloadableServerTLS(issued.fullchain_path, issued.key_path)
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, creator))
        self.assertEqual(creator.certificate_path, issued.fullchain_path)
        self.assertEqual(creator.key_path, issued.key_path)


class CertificateLoadingTests(_TLSTestCase):
    """Bad certificate or key files are refused with the file named."""

    def test_mismatched_key_names_key_path(self) -> None:
        """A key from another certificate is refused, naming the key file and the certificate."""
        first = self.issue("first")
        second = self.issue("second")
        error = self.assertRaises(
            TLSConfigError, ReloadableServerTLS, first.fullchain_path, second.key_path
        )
        self.assertEqual(error.path, second.key_path)
        self.assertIn(f"does not match the certificate {first.fullchain_path}", error.message)
        self.assertEqual(str(error), f"{second.key_path}: {error.message}")

    def test_chain_in_wrong_order_explained(self) -> None:
        """A chain file with the intermediate first is refused with a hint about the order."""
        issued = self.issue("server")
        reordered = Path(self.directory) / "reordered.cer"
        reordered.write_bytes(
            self.ca.intermediate.public_bytes(serialization.Encoding.PEM)
            + issued.certificate.public_bytes(serialization.Encoding.PEM)
        )
        error = self.assertRaises(
            TLSConfigError, load_certificate_options, str(reordered), issued.key_path
        )
        self.assertEqual(error.path, issued.key_path)
        self.assertIn("does not match the certificate", error.message)
        self.assertIn("must come first", error.message)

    def test_missing_certificate_names_path(self) -> None:
        """A missing certificate file is reported with its path and the system's reason."""
        issued = self.issue("server")
        missing = str(Path(self.directory) / "absent.cer")
        error = self.assertRaises(
            TLSConfigError, load_certificate_options, missing, issued.key_path
        )
        self.assertEqual(error.path, missing)
        self.assertIn("No such file or directory", error.message)

    def test_missing_key_names_path(self) -> None:
        """A missing key file is reported with its path."""
        issued = self.issue("server")
        missing = str(Path(self.directory) / "absent.key")
        error = self.assertRaises(
            TLSConfigError, load_certificate_options, issued.fullchain_path, missing
        )
        self.assertEqual(error.path, missing)
        self.assertTrue(str(error).startswith(f"{missing}: "))

    def test_garbage_certificate_names_path(self) -> None:
        """A certificate file that is not PEM is reported with its path."""
        issued = self.issue("server")
        garbage = Path(self.directory) / "garbage.cer"
        garbage.write_bytes(b"this is not a certificate\n")
        error = self.assertRaises(
            TLSConfigError, load_certificate_options, str(garbage), issued.key_path
        )
        self.assertEqual(error.path, str(garbage))
        self.assertIn("no PEM certificate", error.message)

    def test_garbage_key_names_path(self) -> None:
        """A key file that is not PEM is reported with its path."""
        issued = self.issue("server")
        garbage = Path(self.directory) / "garbage.key"
        garbage.write_bytes(b"\x00\x01 not a key")
        error = self.assertRaises(
            TLSConfigError, load_certificate_options, issued.fullchain_path, str(garbage)
        )
        self.assertEqual(error.path, str(garbage))
        self.assertIn("no usable PEM private key", error.message)

    def test_encrypted_key_names_path(self) -> None:
        """A passphrase-protected key is refused, naming the key file."""
        issued = self.issue("server")
        encrypted = Path(self.directory) / "encrypted.key"
        encrypted.write_bytes(
            issued.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.BestAvailableEncryption(b"secret"),
            )
        )
        error = self.assertRaises(
            TLSConfigError, load_certificate_options, issued.fullchain_path, str(encrypted)
        )
        self.assertEqual(error.path, str(encrypted))
        self.assertIn("encrypted", error.message)

    def test_swapped_paths_explained(self) -> None:
        """Giving the key as the certificate and vice versa says the paths look swapped."""
        issued = self.issue("server")
        error = self.assertRaises(
            TLSConfigError, load_certificate_options, issued.key_path, issued.fullchain_path
        )
        self.assertEqual(error.path, issued.key_path)
        self.assertIn("swapped", error.message)

    def test_certificate_not_after(self) -> None:
        """The certificate's expiry date can be read for reports."""
        not_after = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(days=30)
        issued = self.issue("server", not_after=not_after)
        self.assertEqual(certificate_not_after(issued.fullchain_path), not_after)
        creator = ReloadableServerTLS(issued.fullchain_path, issued.key_path)
        self.assertEqual(creator.not_after, not_after)

    def test_expiring_certificate_warns(self) -> None:
        """A certificate expiring within 14 days loads but logs a warning with the date."""
        issued = self.issue("server", not_after=datetime.now(timezone.utc) + timedelta(days=3))
        with capturedLogs() as events:
            ReloadableServerTLS(issued.fullchain_path, issued.key_path)
        warnings_logged = [event for event in events if "days_left" in event]
        self.assertEqual(len(warnings_logged), 1)
        self.assertIn(warnings_logged[0]["days_left"], (2, 3))
        self.assertIn("expires at", formatEvent(warnings_logged[0]))

    def test_expired_certificate_warns(self) -> None:
        """An expired certificate still loads but logs that it has expired."""
        issued = self.issue("server", not_after=datetime.now(timezone.utc) - timedelta(days=1))
        with capturedLogs() as events:
            ReloadableServerTLS(issued.fullchain_path, issued.key_path)
        messages = [formatEvent(event) for event in events]
        self.assertTrue(any("expired at" in message for message in messages), messages)

    def test_fresh_certificate_no_warning(self) -> None:
        """A certificate valid for months loads without warnings."""
        issued = self.issue("server")
        with capturedLogs() as events:
            ReloadableServerTLS(issued.fullchain_path, issued.key_path)
        self.assertEqual([event for event in events if event["log_level"].name == "warn"], [])

    def test_missing_intermediate_warns(self) -> None:
        """A chain file holding only the server certificate loads but warns about the chain."""
        issued = self.issue("server")
        leaf_only = Path(self.directory) / "cert.cer"
        leaf_only.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
        with capturedLogs() as events:
            ReloadableServerTLS(str(leaf_only), issued.key_path)
        messages = [formatEvent(event) for event in events]
        self.assertTrue(any("without intermediates" in message for message in messages), messages)


class ReloadTests(_TLSTestCase):
    """Reloading swaps the certificate for new connections only, or keeps the old one."""

    async def test_reload_serves_new_certificate_to_new_connections(self) -> None:
        """After a reload new connections get the renewed certificate; open ones keep working."""
        first = self.issue("first")
        second = self.issue("second")
        _install(first, self.live_certificate, self.live_key)
        creator = ReloadableServerTLS(self.live_certificate, self.live_key)
        port = await self.serve(creator)

        before = await self.connect(port)
        self.assertEqual(await before.request(b"one"), b"echo one")
        self.assertEqual(before.peer_fingerprint(), first.fingerprint)

        _install(second, self.live_certificate, self.live_key)
        creator.reload()
        self.assertEqual(creator.not_after, second.certificate.not_valid_after_utc)

        after = await self.connect(port)
        self.assertEqual(after.peer_fingerprint(), second.fingerprint)
        self.assertEqual(await after.request(b"two"), b"echo two")

        self.assertEqual(await before.request(b"again"), b"echo again")
        self.assertEqual(before.peer_fingerprint(), first.fingerprint)

    async def test_failed_reload_keeps_old_certificate(self) -> None:
        """A reload with a broken key file fails, naming the key, and the old certificate stays."""
        first = self.issue("first")
        _install(first, self.live_certificate, self.live_key)
        creator = ReloadableServerTLS(self.live_certificate, self.live_key)
        port = await self.serve(creator)

        Path(self.live_key).write_bytes(b"garbage\n")
        error = self.assertRaises(TLSConfigError, creator.reload)
        self.assertEqual(error.path, self.live_key)

        client = await self.connect(port)
        self.assertEqual(client.peer_fingerprint(), first.fingerprint)
        self.assertEqual(await client.request(b"still"), b"echo still")

    async def test_half_renewed_reload_keeps_previous_certificate(self) -> None:
        """A reload after a new chain but before its new key fails and keeps the previous one."""
        first = self.issue("first")
        second = self.issue("second")
        third = self.issue("third")
        _install(first, self.live_certificate, self.live_key)
        creator = ReloadableServerTLS(self.live_certificate, self.live_key)
        port = await self.serve(creator)

        _install(second, self.live_certificate, self.live_key)
        creator.reload()
        shutil.copyfile(third.fullchain_path, self.live_certificate)
        error = self.assertRaises(TLSConfigError, creator.reload)
        self.assertEqual(error.path, self.live_key)
        self.assertIn(f"does not match the certificate {self.live_certificate}", str(error))

        client = await self.connect(port)
        self.assertEqual(client.peer_fingerprint(), second.fingerprint)
        self.assertEqual(await client.request(b"kept"), b"echo kept")

    def test_reload_logs_certificate_without_key_material(self) -> None:
        """A successful reload logs the certificate's names and expiry, and nothing of the key."""
        first = self.issue("first")
        second = self.issue("second", hosts=("gateway.example",))
        _install(first, self.live_certificate, self.live_key)
        creator = ReloadableServerTLS(self.live_certificate, self.live_key)
        _install(second, self.live_certificate, self.live_key)
        with capturedLogs() as events:
            creator.reload()
        reloads = [event for event in events if "Reloaded" in event.get("log_format", "")]
        self.assertEqual(len(reloads), 1)
        message = formatEvent(reloads[0])
        self.assertIn("gateway.example", message)
        self.assertIn(second.certificate.not_valid_after_utc.isoformat(), message)
        key_pem = Path(self.live_key).read_text()
        key_body = "".join(key_pem.splitlines()[1:-1])
        for event in events:
            text = repr(event)
            self.assertNotIn(key_body[:40], text)
            self.assertNotIn("PRIVATE KEY", text)
