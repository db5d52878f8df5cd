"""Serving TLS with runnergw.tls: real handshakes on 127.0.0.1 with generated certificates."""

from __future__ import annotations

import shutil
import ssl
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.ssl import CertificateOptions
from twisted.logger import capturedLogs, formatEvent
from zope.interface.verify import verifyObject

from runnergw.tls.certificate_files import TLSConfigError
from runnergw.tls.reloadable import ReloadableServerTLS, load_certificate_options
from tests.helpers.certs import IssuedCert, fingerprint
from tests.helpers.tls_echo import TLSTestCase

__all__ = [
    "CertificateWarningTests",
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


class HandshakeTests(TLSTestCase):
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


def _install(source: IssuedCert, certificate_path: str, key_path: str) -> None:
    """Copy an issued certificate's files over the paths the server reads."""
    shutil.copyfile(source.fullchain_path, certificate_path)
    shutil.copyfile(source.key_path, key_path)


class ReloadTests(TLSTestCase):
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


class CertificateWarningTests(TLSTestCase):
    """Loading warns about expiry and a missing chain, and still serves."""

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
