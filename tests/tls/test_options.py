"""The server's TLS settings: versions, ciphers and ALPN, over real handshakes on 127.0.0.1."""

from __future__ import annotations

import ssl
from pathlib import Path

from twisted.internet.ssl import CertificateOptions

from runnergw.tls.options import load_certificate_options
from runnergw.tls.reloadable import ReloadableServerTLS
from tests.helpers.certs import fingerprint
from tests.helpers.tls_echo import TLSTestCase

__all__ = ["HandshakeTests"]


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
