"""The private key file: Go PEM, PKCS#8 or kN.secret, exactly one key, both halves checked."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.public_keys import load_public_keys
from runnergw.tokens.signing_keys import load_signing_key, public_key_from_signing_key
from tests.helpers.paseto_keys import (
    b64url,
    go_pem,
    go_raw,
    pkcs8_pem,
    raw_bytes,
    signs_for,
    spki_pem,
    ssh_line,
)

__all__ = ["SigningKeyFileTests"]


class SigningKeyFileTests(SynchronousTestCase):
    """Reading private key files."""

    def setUp(self) -> None:
        """Make a key to spell in the various formats."""
        self.private = Ed25519PrivateKey.generate()
        (self.public,) = load_public_keys(ssh_line(self.private), 4)

    def test_go_pem(self) -> None:
        """Go's ED25519 PRIVATE KEY PEM loads as a v4 signing key."""
        signing = load_signing_key(go_pem(go_raw(self.private)), 4)
        self.assertTrue(signs_for(signing, self.public))
        kind = (signing.version, signing.purpose, signing.is_secret)
        self.assertEqual(kind, (4, "public", True))

    def test_pkcs8_pem(self) -> None:
        """A PKCS#8 PRIVATE KEY PEM loads."""
        signing = load_signing_key(pkcs8_pem(self.private), 4)
        self.assertTrue(signs_for(signing, self.public))

    def test_paserk_secret(self) -> None:
        """A k2.secret PASERK loads as a v2 signing key."""
        signing = load_signing_key(f"k2.secret.{b64url(go_raw(self.private))}".encode(), 2)
        self.assertEqual(signing.version, 2)
        self.assertEqual(raw_bytes(public_key_from_signing_key(signing)), raw_bytes(self.public))

    def test_tampered_public_half_refused(self) -> None:
        """A Go private key whose public half does not match its seed is refused."""
        raw = bytearray(go_raw(self.private))
        raw[40] ^= 1
        data = go_pem(bytes(raw))
        error = self.assertRaises(KeyFileError, load_signing_key, data, 4)
        self.assertIn("does not match", str(error))
        paserk = f"k4.secret.{b64url(bytes(raw))}".encode()
        self.assertRaises(KeyFileError, load_signing_key, paserk, 4)

    def test_seed_only_refused(self) -> None:
        """A Go PEM holding only the 32-byte seed is refused."""
        data = go_pem(self.private.private_bytes_raw())
        self.assertIn("64 bytes", str(self.assertRaises(KeyFileError, load_signing_key, data, 4)))

    def test_rsa_private_key_refused(self) -> None:
        """An RSA private key is refused."""
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.assertRaises(KeyFileError, load_signing_key, pkcs8_pem(rsa_key), 4)

    def test_encrypted_pkcs8_refused(self) -> None:
        """A password-protected private key is refused with a clear message."""
        data = self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"hunter2"),
        )
        error = self.assertRaises(KeyFileError, load_signing_key, data, 4)
        self.assertIn("encrypted", str(error))

    def test_public_key_is_not_a_signing_key(self) -> None:
        """A public key file given as the private key is refused."""
        self.assertRaises(KeyFileError, load_signing_key, ssh_line(self.private), 4)
        self.assertRaises(KeyFileError, load_signing_key, spki_pem(self.private), 4)

    def test_two_keys_refused(self) -> None:
        """A private key file must hold exactly one key."""
        data = go_pem(go_raw(self.private)) + go_pem(go_raw(Ed25519PrivateKey.generate()))
        error = self.assertRaises(KeyFileError, load_signing_key, data, 4)
        self.assertIn("exactly one", str(error))

    def test_errors_do_not_reveal_key(self) -> None:
        """No error about a private key file repeats the key material."""
        raw = bytearray(go_raw(self.private))
        raw[63] ^= 1
        pem = go_pem(bytes(raw))
        body = base64.b64encode(bytes(raw)).decode("ascii")
        paserk = f"k4.secret.{b64url(bytes(raw))}"
        wrong_version = f"k3.secret.{paserk[10:]}"
        for data in (pem, paserk.encode(), paserk[:-1].encode(), wrong_version.encode()):
            message = str(self.assertRaises(KeyFileError, load_signing_key, data, 4))
            self.assertNotIn(body[:16], message)
            self.assertNotIn(paserk[10:26], message)
