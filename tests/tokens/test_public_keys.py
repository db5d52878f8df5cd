"""The public key file: OpenSSH lines, PEM blocks and kN.public PASERKs, several for rotation."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.public_keys import load_public_keys, public_key_from_raw
from runnergw.tokens.signing_keys import load_signing_key
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

__all__ = ["PublicKeyFileTests", "RawPublicKeyTests"]


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


class RawPublicKeyTests(SynchronousTestCase):
    """A public key built from its 32 raw bytes, as every accepted form ends up."""

    def test_verifies_its_signatures(self) -> None:
        """The raw public half of a key verifies what that key signs, for v4 and v2."""
        private = Ed25519PrivateKey.generate()
        raw = private.public_key().public_bytes_raw()
        for version in (4, 2):
            signing = load_signing_key(go_pem(go_raw(private)), version)
            public = public_key_from_raw(raw, version, "line 1")
            self.assertTrue(signs_for(signing, public))
            self.assertEqual((public.version, public.is_secret), (version, False))

    def test_wrong_length_refused(self) -> None:
        """Anything but 32 bytes is refused, saying where it came from and how long it was."""
        for size in (0, 31, 33, 64):
            error = self.assertRaises(KeyFileError, public_key_from_raw, bytes(size), 4, "line 2")
            self.assertEqual(str(error), f"line 2: an Ed25519 public key is 32 bytes, not {size}")
