"""Loading, checking and generating PASETO key files."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pyseto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyseto import KeyInterface
from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.keys import (
    generate_local_key_hex,
    generate_signing_keypair,
    load_public_keys,
    load_signing_key,
    parse_local_key,
    public_key_from_signing_key,
    write_signing_keypair,
)

__all__ = [
    "KeyPairFileTests",
    "LocalKeyTests",
    "PublicKeyFileTests",
    "SigningKeyFileTests",
]

_PRIVATE_LABEL = "ED25519 PRIVATE KEY"


def _b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _raw(key: KeyInterface) -> bytes:
    """The key material of a pyseto key, read back from its PASERK."""
    return base64.urlsafe_b64decode(key.to_paserk().split(".")[2] + "==")


def _go_pem(raw: bytes) -> bytes:
    """Go's ``ED25519 PRIVATE KEY`` PEM for raw bytes."""
    body = base64.b64encode(raw).decode("ascii")
    rows = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {_PRIVATE_LABEL}-----\n{rows}\n-----END {_PRIVATE_LABEL}-----\n".encode()


def _go_raw(private: Ed25519PrivateKey) -> bytes:
    """Go's 64-byte private key: the seed followed by the public key."""
    return private.private_bytes_raw() + private.public_key().public_bytes_raw()


def _ssh_line(private: Ed25519PrivateKey) -> bytes:
    """The OpenSSH public key line of a private key, without newline."""
    return private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def _spki_pem(private: Ed25519PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key's public key."""
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pkcs8_pem(private: Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    """The unencrypted PKCS#8 PEM of a private key."""
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _signs_for(signing: KeyInterface, public: KeyInterface) -> bool:
    """Tell whether a token signed with ``signing`` verifies with ``public``."""
    token = pyseto.encode(signing, b'{"sub":"x"}')
    try:
        return pyseto.decode(public, token).payload == b'{"sub":"x"}'
    except pyseto.VerifyError:
        return False


class KeyPairFileTests(SynchronousTestCase):
    """Generating and writing a key pair, then reading it back."""

    def setUp(self) -> None:
        """Use a conventional umask so that file modes are predictable."""
        previous = os.umask(0o022)
        self.addCleanup(os.umask, previous)
        self.directory = Path(self.mktemp())

    def test_written_pair_reloads(self) -> None:
        """A generated pair written to disk loads back, and the public key verifies signatures."""
        key_path, pub_path = self.directory / "paseto.key", self.directory / "paseto.pub"
        write_signing_keypair(key_path, pub_path)
        signing = load_signing_key(key_path.read_bytes(), 4)
        (public,) = load_public_keys(pub_path.read_bytes(), 4)
        self.assertTrue(_signs_for(signing, public))
        self.assertEqual(_raw(public), _raw(public_key_from_signing_key(signing)))

    def test_generated_files_use_go_formats(self) -> None:
        """The private file is Go's 64-byte ED25519 PRIVATE KEY PEM; the public one an ssh line."""
        private_file, public_file = generate_signing_keypair()
        text = private_file.decode("ascii")
        self.assertTrue(text.startswith(f"-----BEGIN {_PRIVATE_LABEL}-----\n"))
        self.assertTrue(text.endswith(f"-----END {_PRIVATE_LABEL}-----\n"))
        raw = base64.b64decode("".join(text.splitlines()[1:-1]))
        self.assertEqual(len(raw), 64)
        seed_key = Ed25519PrivateKey.from_private_bytes(raw[:32])
        self.assertEqual(seed_key.public_key().public_bytes_raw(), raw[32:])
        self.assertEqual(public_file, _ssh_line(seed_key) + b"\n")

    def test_private_key_mode(self) -> None:
        """The private key is readable by its owner only; the public key is world-readable."""
        key_path = self.directory / "a" / "paseto.key"
        pub_path = self.directory / "b" / "paseto.pub"
        write_signing_keypair(key_path, pub_path)
        self.assertEqual(stat.S_IMODE(key_path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(pub_path.stat().st_mode), 0o644)

    def test_overwrite_refused(self) -> None:
        """Existing key files are left alone unless overwriting is asked for."""
        key_path, pub_path = self.directory / "paseto.key", self.directory / "paseto.pub"
        write_signing_keypair(key_path, pub_path)
        before = key_path.read_bytes(), pub_path.read_bytes()
        error = self.assertRaises(FileExistsError, write_signing_keypair, key_path, pub_path)
        self.assertEqual(error.filename, str(key_path))
        self.assertEqual((key_path.read_bytes(), pub_path.read_bytes()), before)

    def test_existing_public_file_protects_private(self) -> None:
        """An existing public key file stops the write before a new private key is created."""
        key_path, pub_path = self.directory / "paseto.key", self.directory / "paseto.pub"
        self.directory.mkdir()
        pub_path.write_bytes(b"keep me\n")
        error = self.assertRaises(FileExistsError, write_signing_keypair, key_path, pub_path)
        self.assertEqual(error.filename, str(pub_path))
        self.assertFalse(key_path.exists())
        self.assertEqual(pub_path.read_bytes(), b"keep me\n")

    def test_overwrite_replaces_with_private_mode(self) -> None:
        """Overwriting replaces both files and the new private key is still mode 0600."""
        key_path, pub_path = self.directory / "paseto.key", self.directory / "paseto.pub"
        write_signing_keypair(key_path, pub_path)
        before = key_path.read_bytes()
        key_path.chmod(0o644)
        write_signing_keypair(key_path, pub_path, overwrite=True)
        self.assertNotEqual(key_path.read_bytes(), before)
        self.assertEqual(stat.S_IMODE(key_path.stat().st_mode), 0o600)
        signing = load_signing_key(key_path.read_bytes(), 4)
        (public,) = load_public_keys(pub_path.read_bytes(), 4)
        self.assertTrue(_signs_for(signing, public))
        names = sorted(path.name for path in self.directory.iterdir())
        self.assertEqual(names, ["paseto.key", "paseto.pub"])


class PublicKeyFileTests(SynchronousTestCase):
    """Reading public key files."""

    def setUp(self) -> None:
        """Make a key to spell in the various formats."""
        self.private = Ed25519PrivateKey.generate()
        self.signing = load_signing_key(_go_pem(_go_raw(self.private)), 4)

    def test_openssh_line_with_comment(self) -> None:
        """An ssh-ed25519 line with a trailing comment loads."""
        (public,) = load_public_keys(_ssh_line(self.private) + b" ops@runner host\n", 4)
        self.assertTrue(_signs_for(self.signing, public))
        self.assertEqual(public.version, 4)
        self.assertEqual(public.purpose, "public")
        self.assertFalse(public.is_secret)

    def test_several_lines_for_rotation(self) -> None:
        """Each ssh-ed25519 line is one key; comments and blank lines are skipped."""
        other = Ed25519PrivateKey.generate()
        data = b"# current\n%s\n\n# next\n%s\n" % (_ssh_line(self.private), _ssh_line(other))
        keys = load_public_keys(data, 4)
        self.assertEqual(len(keys), 2)
        self.assertTrue(_signs_for(self.signing, keys[0]))
        self.assertFalse(_signs_for(self.signing, keys[1]))

    def test_spki_pem(self) -> None:
        """PEM SubjectPublicKeyInfo blocks load, several in one file."""
        other = Ed25519PrivateKey.generate()
        keys = load_public_keys(_spki_pem(self.private) + _spki_pem(other), 2)
        self.assertEqual([key.version for key in keys], [2, 2])
        self.assertEqual(_raw(keys[0]), self.private.public_key().public_bytes_raw())
        self.assertEqual(_raw(keys[1]), other.public_key().public_bytes_raw())

    def test_paserk_public(self) -> None:
        """k4.public PASERK lines load."""
        raw = self.private.public_key().public_bytes_raw()
        (public,) = load_public_keys(f"k4.public.{_b64url(raw)}\n".encode(), 4)
        self.assertTrue(_signs_for(self.signing, public))

    def test_paserk_version_mismatch(self) -> None:
        """A k2.public PASERK is refused where v4 keys are expected."""
        raw = self.private.public_key().public_bytes_raw()
        error = self.assertRaises(
            KeyFileError, load_public_keys, f"k2.public.{_b64url(raw)}".encode(), 4
        )
        self.assertIn("k2", str(error))

    def test_k3_paserk_refused(self) -> None:
        """A k3 PASERK is refused."""
        raw = b"\x02" + bytes(48)
        self.assertRaises(KeyFileError, load_public_keys, f"k3.public.{_b64url(raw)}".encode(), 4)

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
        self.assertRaises(KeyFileError, load_public_keys, _pkcs8_pem(self.private), 4)
        paserk = f"k4.secret.{_b64url(_go_raw(self.private))}".encode()
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
        self.assertRaises(KeyFileError, load_public_keys, _ssh_line(self.private), 3)


class SigningKeyFileTests(SynchronousTestCase):
    """Reading private key files."""

    def setUp(self) -> None:
        """Make a key to spell in the various formats."""
        self.private = Ed25519PrivateKey.generate()
        (self.public,) = load_public_keys(_ssh_line(self.private), 4)

    def test_go_pem(self) -> None:
        """Go's ED25519 PRIVATE KEY PEM loads as a v4 signing key."""
        signing = load_signing_key(_go_pem(_go_raw(self.private)), 4)
        self.assertTrue(_signs_for(signing, self.public))
        kind = (signing.version, signing.purpose, signing.is_secret)
        self.assertEqual(kind, (4, "public", True))

    def test_pkcs8_pem(self) -> None:
        """A PKCS#8 PRIVATE KEY PEM loads."""
        signing = load_signing_key(_pkcs8_pem(self.private), 4)
        self.assertTrue(_signs_for(signing, self.public))

    def test_paserk_secret(self) -> None:
        """A k2.secret PASERK loads as a v2 signing key."""
        signing = load_signing_key(f"k2.secret.{_b64url(_go_raw(self.private))}".encode(), 2)
        self.assertEqual(signing.version, 2)
        self.assertEqual(_raw(public_key_from_signing_key(signing)), _raw(self.public))

    def test_tampered_public_half_refused(self) -> None:
        """A Go private key whose public half does not match its seed is refused."""
        raw = bytearray(_go_raw(self.private))
        raw[40] ^= 1
        data = _go_pem(bytes(raw))
        error = self.assertRaises(KeyFileError, load_signing_key, data, 4)
        self.assertIn("does not match", str(error))
        paserk = f"k4.secret.{_b64url(bytes(raw))}".encode()
        self.assertRaises(KeyFileError, load_signing_key, paserk, 4)

    def test_seed_only_refused(self) -> None:
        """A Go PEM holding only the 32-byte seed is refused."""
        data = _go_pem(self.private.private_bytes_raw())
        self.assertIn("64 bytes", str(self.assertRaises(KeyFileError, load_signing_key, data, 4)))

    def test_rsa_private_key_refused(self) -> None:
        """An RSA private key is refused."""
        rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.assertRaises(KeyFileError, load_signing_key, _pkcs8_pem(rsa_key), 4)

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
        self.assertRaises(KeyFileError, load_signing_key, _ssh_line(self.private), 4)
        self.assertRaises(KeyFileError, load_signing_key, _spki_pem(self.private), 4)

    def test_two_keys_refused(self) -> None:
        """A private key file must hold exactly one key."""
        data = _go_pem(_go_raw(self.private)) + _go_pem(_go_raw(Ed25519PrivateKey.generate()))
        error = self.assertRaises(KeyFileError, load_signing_key, data, 4)
        self.assertIn("exactly one", str(error))

    def test_errors_do_not_reveal_key(self) -> None:
        """No error about a private key file repeats the key material."""
        raw = bytearray(_go_raw(self.private))
        raw[63] ^= 1
        pem = _go_pem(bytes(raw))
        body = base64.b64encode(bytes(raw)).decode("ascii")
        paserk = f"k4.secret.{_b64url(bytes(raw))}"
        wrong_version = f"k3.secret.{paserk[10:]}"
        for data in (pem, paserk.encode(), paserk[:-1].encode(), wrong_version.encode()):
            message = str(self.assertRaises(KeyFileError, load_signing_key, data, 4))
            self.assertNotIn(body[:16], message)
            self.assertNotIn(paserk[10:26], message)


class LocalKeyTests(SynchronousTestCase):
    """The symmetric key for vN.local tokens."""

    def test_hex_key(self) -> None:
        """64 hex characters load as a 32-byte local key, surrounding whitespace ignored."""
        text = "707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f"
        key = parse_local_key(f"  {text}\n", 4)
        self.assertEqual((key.version, key.purpose), (4, "local"))
        self.assertEqual(_raw(key), bytes.fromhex(text))

    def test_paserk_key(self) -> None:
        """A k2.local PASERK loads for v2."""
        raw = bytes(range(32))
        key = parse_local_key(f"k2.local.{_b64url(raw)}", 2)
        self.assertEqual((key.version, key.purpose), (2, "local"))
        self.assertEqual(_raw(key), raw)

    def test_wrong_lengths_refused(self) -> None:
        """31- and 33-byte keys are refused, as hex and as PASERK, for v4 and v2."""
        for size in (31, 33):
            raw = bytes(range(size))
            for version in (4, 2):
                for text in (raw.hex(), f"k{version}.local.{_b64url(raw)}"):
                    error = self.assertRaises(KeyFileError, parse_local_key, text, version)
                    self.assertNotIn(text, str(error))

    def test_other_versions_and_types_refused(self) -> None:
        """k3.local, k4.public and k4.secret PASERKs are not symmetric v4 keys."""
        raw = bytes(range(32))
        for text in (f"k3.local.{_b64url(raw)}", f"k4.public.{_b64url(raw)}", "k4.secret.AAAA"):
            self.assertRaises(KeyFileError, parse_local_key, text, 4)
        self.assertRaises(KeyFileError, parse_local_key, raw.hex(), 3)

    def test_errors_never_contain_key_text(self) -> None:
        """Refusing a symmetric key never repeats it."""
        candidates = [
            "707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e",
            "707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f90",
            "707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8eZZ",
            "k4.local.cHFyc3R1dnd4eXp7fH1-f4CBgoOEhYaHiImKi4yNjo8=",
            "k3.local.cHFyc3R1dnd4eXp7fH1-f4CBgoOEhYaHiImKi4yNjo8",
            "correct horse battery staple",
        ]
        for text in candidates:
            message = str(self.assertRaises(KeyFileError, parse_local_key, text, 4))
            self.assertNotIn(text, message)
            self.assertNotIn(text[9:25], message)

    def test_generated_key(self) -> None:
        """A generated key is 64 lowercase hex characters, random, and loads."""
        first, second = generate_local_key_hex(), generate_local_key_hex()
        self.assertRegex(first, r"^[0-9a-f]{64}$")
        self.assertNotEqual(first, second)
        self.assertEqual(parse_local_key(first, 4).purpose, "local")
