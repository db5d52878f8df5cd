"""Loading and checking PASETO key files."""

from __future__ import annotations

import base64

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.keys import load_public_keys, load_signing_key, public_key_from_signing_key
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

__all__ = ["PublicKeyFileTests", "SigningKeyFileTests"]


class PublicKeyFileTests(SynchronousTestCase):
    """Reading public key files."""

    def setUp(self) -> None:
        """Make a key to spell in the various formats."""
        self.private = Ed25519PrivateKey.generate()
        self.signing = load_signing_key(go_pem(go_raw(self.private)), 4)

    def test_openssh_line_with_comment(self) -> None:
        """An ssh-ed25519 line with a trailing comment loads."""
        (public,) = load_public_keys(ssh_line(self.private) + b" ops@runner host\n", 4)
        self.assertTrue(signs_for(self.signing, public))
        self.assertEqual(public.version, 4)
        self.assertEqual(public.purpose, "public")
        self.assertFalse(public.is_secret)

    def test_several_lines_for_rotation(self) -> None:
        """Each ssh-ed25519 line is one key; comments and blank lines are skipped."""
        other = Ed25519PrivateKey.generate()
        data = b"# current\n%s\n\n# next\n%s\n" % (ssh_line(self.private), ssh_line(other))
        keys = load_public_keys(data, 4)
        self.assertEqual(len(keys), 2)
        self.assertTrue(signs_for(self.signing, keys[0]))
        self.assertFalse(signs_for(self.signing, keys[1]))

    def test_spki_pem(self) -> None:
        """PEM SubjectPublicKeyInfo blocks load, several in one file."""
        other = Ed25519PrivateKey.generate()
        keys = load_public_keys(spki_pem(self.private) + spki_pem(other), 2)
        self.assertEqual([key.version for key in keys], [2, 2])
        self.assertEqual(raw_bytes(keys[0]), self.private.public_key().public_bytes_raw())
        self.assertEqual(raw_bytes(keys[1]), other.public_key().public_bytes_raw())

    def test_paserk_public(self) -> None:
        """k4.public PASERK lines load."""
        raw = self.private.public_key().public_bytes_raw()
        (public,) = load_public_keys(f"k4.public.{b64url(raw)}\n".encode(), 4)
        self.assertTrue(signs_for(self.signing, public))

    def test_paserk_version_mismatch(self) -> None:
        """A k2.public PASERK is refused where v4 keys are expected."""
        raw = self.private.public_key().public_bytes_raw()
        error = self.assertRaises(
            KeyFileError, load_public_keys, f"k2.public.{b64url(raw)}".encode(), 4
        )
        self.assertIn("k2", str(error))

    def test_k3_paserk_refused(self) -> None:
        """A k3 PASERK is refused."""
        raw = b"\x02" + bytes(48)
        self.assertRaises(KeyFileError, load_public_keys, f"k3.public.{b64url(raw)}".encode(), 4)

    def test_rsa_public_keys_refused(self) -> None:
        """RSA keys are refused in both PEM and OpenSSH form."""
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
        pem = rsa_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        ssh = rsa_key.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        self.assertIn("Ed25519", str(self.assertRaises(KeyFileError, load_public_keys, pem, 4)))
        self.assertIn("ssh-rsa", str(self.assertRaises(KeyFileError, load_public_keys, ssh, 4)))

    def test_ecdsa_public_key_refused(self) -> None:
        """An ECDSA OpenSSH key is refused."""
        ecdsa = ec.generate_private_key(ec.SECP256R1()).public_key()
        ssh = ecdsa.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        )
        self.assertRaises(KeyFileError, load_public_keys, ssh, 4)

    def test_private_key_in_public_file_refused(self) -> None:
        """A private key (PKCS#8 or k4.secret) in a public key file is refused, not derived."""
        self.assertRaises(KeyFileError, load_public_keys, pkcs8_pem(self.private), 4)
        paserk = f"k4.secret.{b64url(go_raw(self.private))}".encode()
        self.assertRaises(KeyFileError, load_public_keys, paserk, 4)

    def test_empty_file_refused(self) -> None:
        """A public key file with only comments is refused."""
        error = self.assertRaises(KeyFileError, load_public_keys, b"# nothing here\n\n", 4)
        self.assertIn("no public key", str(error))

    def test_garbage_line_refused_without_echo(self) -> None:
        """An unrecognised line is refused and its text is not repeated."""
        secret = "k4local-not-really-1234567890abcdef"
        error = self.assertRaises(KeyFileError, load_public_keys, secret.encode(), 4)
        self.assertNotIn(secret, str(error))
        self.assertIn("line 1", str(error))

    def test_unsupported_version_refused(self) -> None:
        """Asking for v3 keys is refused."""
        self.assertRaises(KeyFileError, load_public_keys, ssh_line(self.private), 3)


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
