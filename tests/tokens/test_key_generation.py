"""Making new keys: a signing pair in Go's file formats with safe modes, and a symmetric key."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.key_generation import (
    generate_local_key_hex,
    generate_signing_keypair,
    write_signing_keypair,
)
from runnergw.tokens.local_keys import parse_local_key
from runnergw.tokens.public_keys import load_public_keys
from runnergw.tokens.signing_keys import load_signing_key, public_key_from_signing_key
from tests.helpers.paseto_keys import GO_PRIVATE_LABEL, raw_bytes, signs_for, ssh_line

__all__ = ["KeyPairFileTests", "LocalKeyGenerationTests"]


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
        self.assertTrue(signs_for(signing, public))
        self.assertEqual(raw_bytes(public), raw_bytes(public_key_from_signing_key(signing)))

    def test_generated_files_use_go_formats(self) -> None:
        """The private file is Go's 64-byte ED25519 PRIVATE KEY PEM; the public one an ssh line."""
        private_file, public_file = generate_signing_keypair()
        text = private_file.decode("ascii")
        self.assertTrue(text.startswith(f"-----BEGIN {GO_PRIVATE_LABEL}-----\n"))
        self.assertTrue(text.endswith(f"-----END {GO_PRIVATE_LABEL}-----\n"))
        raw = base64.b64decode("".join(text.splitlines()[1:-1]))
        self.assertEqual(len(raw), 64)
        seed_key = Ed25519PrivateKey.from_private_bytes(raw[:32])
        self.assertEqual(seed_key.public_key().public_bytes_raw(), raw[32:])
        self.assertEqual(public_file, ssh_line(seed_key) + b"\n")

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
        self.assertTrue(signs_for(signing, public))
        names = sorted(path.name for path in self.directory.iterdir())
        self.assertEqual(names, ["paseto.key", "paseto.pub"])


class LocalKeyGenerationTests(SynchronousTestCase):
    """Generating the symmetric key for vN.local tokens."""

    def test_generated_key(self) -> None:
        """A generated key is 64 lowercase hex characters, random, and loads."""
        first, second = generate_local_key_hex(), generate_local_key_hex()
        self.assertRegex(first, r"^[0-9a-f]{64}$")
        self.assertNotEqual(first, second)
        self.assertEqual(parse_local_key(first, 4).purpose, "local")
