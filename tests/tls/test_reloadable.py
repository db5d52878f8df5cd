"""Reloading the served certificate on SIGHUP, and the warnings a load logs."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import capturedLogs, formatEvent
from zope.interface.verify import verifyObject

from runnergw.tls.certificate_files import TLSConfigError
from runnergw.tls.reloadable import ReloadableServerTLS
from tests.helpers.certs import IssuedCert
from tests.helpers.tls_echo import TLSTestCase

__all__ = ["CertificateWarningTests", "ConnectionCreatorTests", "ReloadTests"]


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
        creator.serve_as(ReloadableServerTLS(self.live_certificate, self.live_key))
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
        error = self.assertRaises(TLSConfigError, ReloadableServerTLS, self.live_certificate,
                                  self.live_key)
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
        creator.serve_as(ReloadableServerTLS(self.live_certificate, self.live_key))
        shutil.copyfile(third.fullchain_path, self.live_certificate)
        error = self.assertRaises(TLSConfigError, ReloadableServerTLS, self.live_certificate,
                                  self.live_key)
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
            creator.serve_as(ReloadableServerTLS(self.live_certificate, self.live_key))
        reloads = [event for event in events if "Loaded" in event.get("log_format", "")]
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


class ConnectionCreatorTests(TLSTestCase):
    """The reloadable creator is what Twisted's TLS factory expects."""

    def test_provides_server_connection_creator(self) -> None:
        """The reloadable creator is accepted by TLSMemoryBIOFactory as a server creator."""
        issued = self.issue("server")
        creator = ReloadableServerTLS(issued.fullchain_path, issued.key_path)
        self.assertTrue(verifyObject(IOpenSSLServerConnectionCreator, creator))
        self.assertEqual(creator.certificate_path, issued.fullchain_path)
        self.assertEqual(creator.key_path, issued.key_path)
