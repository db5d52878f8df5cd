"""Loading and writing the WebSaaS RSA keys, and server ids."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from twisted.trial.unittest import SynchronousTestCase

from runnergw.websaas import keys
from runnergw.websaas.keys import (
    RSAKeyError,
    load_rsa_private_key,
    load_rsa_public_key,
    new_server_id,
    write_rsa_keypair,
)
from tests.websaas import other_key, public_pem, saas_key

__all__ = ["KeyPairFileTests", "PrivateKeyTests", "PublicKeyTests", "ServerIdTests"]


def _private_pem(key: Any, form: serialization.PrivateFormat = serialization.PrivateFormat.PKCS8,
                 encryption: Any = None) -> bytes:
    """A private key as PEM."""
    return key.private_bytes(serialization.Encoding.PEM, form,
                             encryption or serialization.NoEncryption())


def _pkcs1_public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The ``RSA PUBLIC KEY`` (PKCS#1) PEM of a private key's public half."""
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.PKCS1)


def _small_key() -> rsa.RSAPrivateKey:
    """A 1024-bit RSA key (quick to make, too short to accept)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=1024)


class PublicKeyTests(SynchronousTestCase):
    """``load_rsa_public_key``."""

    def test_spki(self) -> None:
        """A ``PUBLIC KEY`` block loads."""
        loaded = load_rsa_public_key(public_pem(saas_key()))
        self.assertEqual(loaded.public_numbers(), saas_key().public_key().public_numbers())

    def test_pkcs1(self) -> None:
        """An ``RSA PUBLIC KEY`` block loads."""
        loaded = load_rsa_public_key(_pkcs1_public_pem(saas_key()))
        self.assertEqual(loaded.public_numbers(), saas_key().public_key().public_numbers())

    def test_surrounding_text(self) -> None:
        """Blank lines and CRLF line ends around the block are fine."""
        pem = b"\r\n" + public_pem(saas_key()).replace(b"\n", b"\r\n") + b"\r\n"
        self.assertEqual(load_rsa_public_key(pem).key_size, 2048)

    def test_refusals(self) -> None:
        """Empty, garbage, private, non-RSA, short, doubled and corrupted keys."""
        ec_pem = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        ed_pem = Ed25519PrivateKey.generate().public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        good = public_pem(saas_key())
        corrupted = good.replace(good.splitlines()[3], b"!" * 64)
        cases = {
            b"": "no PEM block",
            b"ssh-rsa AAAAB3NzaC1yc2E user@host\n": "no PEM block",
            _private_pem(saas_key()): "private key",
            _private_pem(saas_key(), serialization.PrivateFormat.TraditionalOpenSSL):
                "private key",
            ec_pem: "not an RSA key",
            ed_pem: "not an RSA key",
            public_pem(_small_key()): "1024 bits",
            good + public_pem(other_key()): "exactly one PEM block",
            good.replace(b"PUBLIC KEY", b"CERTIFICATE"): "type CERTIFICATE",
            corrupted: "not a valid public key",
        }
        for data, message in cases.items():
            with self.subTest(message=message):
                error = self.assertRaises(RSAKeyError, load_rsa_public_key, data)
                self.assertIn(message, str(error))

    def test_errors_quote_no_key_material(self) -> None:
        """A refused file's contents never appear in the message."""
        small = public_pem(_small_key())
        error = self.assertRaises(RSAKeyError, load_rsa_public_key, small)
        for line in small.splitlines()[1:-1]:
            self.assertNotIn(line.decode(), str(error))


class PrivateKeyTests(SynchronousTestCase):
    """``load_rsa_private_key``."""

    def test_pkcs8(self) -> None:
        """A ``PRIVATE KEY`` block loads."""
        loaded = load_rsa_private_key(_private_pem(saas_key()))
        self.assertEqual(loaded.private_numbers(), saas_key().private_numbers())

    def test_pkcs1(self) -> None:
        """An ``RSA PRIVATE KEY`` block loads."""
        pem = _private_pem(saas_key(), serialization.PrivateFormat.TraditionalOpenSSL)
        self.assertIn(b"BEGIN RSA PRIVATE KEY", pem)
        loaded = load_rsa_private_key(pem)
        self.assertEqual(loaded.private_numbers(), saas_key().private_numbers())

    def test_refusals(self) -> None:
        """Empty, public, encrypted, non-RSA, short, doubled and corrupted keys."""
        password = serialization.BestAvailableEncryption(b"secret")
        good = _private_pem(saas_key())
        corrupted = good.replace(good.splitlines()[5], b"!" * 64)
        cases = {
            b"": "no PEM block",
            b"not a key": "no PEM block",
            public_pem(saas_key()): "public key",
            _pkcs1_public_pem(saas_key()): "public key",
            _private_pem(saas_key(), encryption=password): "encrypted",
            _private_pem(saas_key(), serialization.PrivateFormat.TraditionalOpenSSL, password):
                "encrypted",
            _private_pem(ec.generate_private_key(ec.SECP256R1())): "not an RSA key",
            _private_pem(Ed25519PrivateKey.generate()): "not an RSA key",
            _private_pem(Ed25519PrivateKey.generate(), serialization.PrivateFormat.OpenSSH):
                "type OPENSSH PRIVATE KEY",
            _private_pem(_small_key()): "1024 bits",
            good + good: "exactly one PEM block",
            corrupted: "not a valid private key",
        }
        for data, message in cases.items():
            with self.subTest(message=message):
                error = self.assertRaises(RSAKeyError, load_rsa_private_key, data)
                self.assertIn(message, str(error))

    def test_errors_quote_no_key_material(self) -> None:
        """A refused private key never appears in the message."""
        small = _private_pem(_small_key())
        error = self.assertRaises(RSAKeyError, load_rsa_private_key, small)
        for line in small.splitlines()[1:-1]:
            self.assertNotIn(line.decode(), str(error))


class KeyPairFileTests(SynchronousTestCase):
    """``write_rsa_keypair``: formats, modes and refusing to overwrite."""

    def setUp(self) -> None:
        """Use a conventional umask, and hand out pre-made keys instead of generating."""
        previous = os.umask(0o022)
        self.addCleanup(os.umask, previous)
        self.directory = Path(self.mktemp())
        self.requested: list[int] = []
        self.supply = [saas_key(), other_key()]

        def generate(public_exponent: int, key_size: int) -> rsa.RSAPrivateKey:
            self.assertEqual(public_exponent, 65537)
            self.requested.append(key_size)
            return self.supply.pop(0)

        self.patch(keys, "generate_private_key", generate)

    def test_round_trip(self) -> None:
        """The written pair loads back: PKCS#8 private, SubjectPublicKeyInfo public."""
        private_path = self.directory / "keys" / "node_private.pem"
        public_path = self.directory / "keys" / "node_public.pem"
        write_rsa_keypair(private_path, public_path)
        self.assertEqual(self.requested, [3072])
        self.assertTrue(private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----\n"))
        self.assertTrue(public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----\n"))
        private = load_rsa_private_key(private_path.read_bytes())
        public = load_rsa_public_key(public_path.read_bytes())
        self.assertEqual(private.public_key().public_numbers(), public.public_numbers())

    def test_real_generation(self) -> None:
        """Without the test double, a real key of the asked size is written."""
        self.patch(keys, "generate_private_key", rsa.generate_private_key)
        private_path, public_path = self.directory / "a.pem", self.directory / "b.pem"
        write_rsa_keypair(private_path, public_path, bits=2048)
        private = load_rsa_private_key(private_path.read_bytes())
        self.assertEqual(private.key_size, 2048)
        self.assertEqual(load_rsa_public_key(public_path.read_bytes()).public_numbers(),
                         private.public_key().public_numbers())

    def test_modes(self) -> None:
        """The private key is readable by its owner only; the public key by everyone."""
        private_path = self.directory / "a" / "node_private.pem"
        public_path = self.directory / "b" / "node_public.pem"
        write_rsa_keypair(private_path, public_path)
        self.assertEqual(stat.S_IMODE(private_path.stat().st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(public_path.stat().st_mode), 0o644)

    def test_overwrite_refused(self) -> None:
        """Existing files are left alone, and the error names the file."""
        private_path, public_path = self.directory / "p.pem", self.directory / "q.pem"
        write_rsa_keypair(private_path, public_path)
        before = private_path.read_bytes(), public_path.read_bytes()
        error = self.assertRaises(FileExistsError, write_rsa_keypair, private_path, public_path)
        self.assertEqual(error.filename, str(private_path))
        self.assertEqual((private_path.read_bytes(), public_path.read_bytes()), before)
        self.assertEqual(len(self.requested), 1)

    def test_existing_public_file_protects_private(self) -> None:
        """An existing public key file stops the write before the private key is created."""
        private_path, public_path = self.directory / "p.pem", self.directory / "q.pem"
        self.directory.mkdir()
        public_path.write_bytes(b"keep me\n")
        error = self.assertRaises(FileExistsError, write_rsa_keypair, private_path, public_path)
        self.assertEqual(error.filename, str(public_path))
        self.assertFalse(private_path.exists())
        self.assertEqual(public_path.read_bytes(), b"keep me\n")

    def test_overwrite(self) -> None:
        """Overwriting replaces both files, and the private key is still mode 0600."""
        private_path, public_path = self.directory / "p.pem", self.directory / "q.pem"
        write_rsa_keypair(private_path, public_path)
        os.chmod(private_path, 0o644)
        first = private_path.read_bytes()
        write_rsa_keypair(private_path, public_path, overwrite=True)
        self.assertNotEqual(private_path.read_bytes(), first)
        self.assertEqual(stat.S_IMODE(private_path.stat().st_mode), 0o600)
        self.assertEqual(load_rsa_public_key(public_path.read_bytes()).public_numbers(),
                         other_key().public_key().public_numbers())
        self.assertEqual(sorted(p.name for p in self.directory.iterdir()), ["p.pem", "q.pem"])

    def test_short_keys_refused(self) -> None:
        """Fewer than 2048 bits is refused before anything is generated or written."""
        private_path, public_path = self.directory / "p.pem", self.directory / "q.pem"
        self.assertRaises(ValueError, write_rsa_keypair, private_path, public_path, bits=1024)
        self.assertEqual(self.requested, [])
        self.assertFalse(self.directory.exists())


class ServerIdTests(SynchronousTestCase):
    """``new_server_id``."""

    def test_form(self) -> None:
        """``base64:`` and 24 random bytes in standard base64."""
        server_id = new_server_id()
        self.assertTrue(server_id.startswith("base64:"))
        self.assertEqual(len(base64.b64decode(server_id[7:], validate=True)), 24)
        self.assertEqual(len(server_id), 7 + 32)

    def test_random(self) -> None:
        """Every id is new."""
        self.assertEqual(len({new_server_id() for _ in range(20)}), 20)

    def test_body_is_standard_base64(self) -> None:
        """The body uses the standard alphabet, as the old node's ids did."""
        for _ in range(50):
            body = new_server_id()[7:]
            self.assertEqual(base64.b64encode(base64.b64decode(body)).decode(), body)
