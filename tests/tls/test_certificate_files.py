"""Reading the certificate chain and key files: what is served, and how bad files are named."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from runnergw.tls.certificate_files import (
    TLSConfigError,
    certificate_not_after,
    read_server_certificate,
)
from runnergw.tls.options import load_certificate_options
from runnergw.tls.reloadable import ReloadableServerTLS
from tests.helpers.certs import fingerprint
from tests.helpers.tls_echo import TLSTestCase

__all__ = ["CertificateLoadingTests", "ServerCertificateTests"]


class ServerCertificateTests(TLSTestCase):
    """A good chain file and key are read as the server certificate, its chain and its key."""

    def test_full_chain_read_in_order(self) -> None:
        """The server certificate comes first, the intermediate after it, with its own key."""
        issued = self.issue("server")
        certificate = read_server_certificate(issued.fullchain_path, issued.key_path)
        self.assertEqual(fingerprint(certificate.leaf), issued.fingerprint)
        self.assertEqual(
            [fingerprint(link) for link in certificate.chain],
            [fingerprint(self.ca.intermediate)],
        )
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        self.assertEqual(
            certificate.key.public_key().public_bytes(serialization.Encoding.DER, public),
            issued.certificate.public_key().public_bytes(serialization.Encoding.DER, public),
        )

    def test_leaf_only_file_has_empty_chain(self) -> None:
        """A file holding only the server certificate is read with no chain after it."""
        issued = self.issue("server")
        leaf_only = Path(self.directory) / "cert.cer"
        leaf_only.write_bytes(issued.certificate.public_bytes(serialization.Encoding.PEM))
        certificate = read_server_certificate(str(leaf_only), issued.key_path)
        self.assertEqual(fingerprint(certificate.leaf), issued.fingerprint)
        self.assertEqual(certificate.chain, ())

    def test_missing_file_reported_before_damaged_one(self) -> None:
        """With a damaged certificate and a missing key, the missing key is reported."""
        garbage = Path(self.directory) / "garbage.cer"
        garbage.write_bytes(b"this is not a certificate\n")
        missing = str(Path(self.directory) / "absent.key")
        error = self.assertRaises(
            TLSConfigError, read_server_certificate, str(garbage), missing
        )
        self.assertEqual(error.path, missing)


class CertificateLoadingTests(TLSTestCase):
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
