"""The text forms of key files: PEM blocks and lines, PEM as Go writes it, PASERKs, key kinds."""

from __future__ import annotations

import base64

import pyseto
from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.key_formats import (
    GO_PRIVATE_KEY_LABEL,
    Paserk,
    PemBlock,
    TextLine,
    check_key,
    check_version,
    encode_pem,
    key_file_items,
    looks_like_paserk,
    parse_paserk,
)

__all__ = ["KeyFileItemTests", "KeyKindTests", "PaserkTests", "PemEncodingTests"]


def _b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class KeyFileItemTests(SynchronousTestCase):
    """A key file is read as PEM blocks and lines, each with the line it starts on."""

    def test_blocks_and_lines_in_file_order(self) -> None:
        """Comments and blank lines are skipped; keys keep their line numbers for messages."""
        data = (
            b"# rotation list\n"
            b"\n"
            b"  ssh-ed25519 AAAA comment  \n"
            b"-----BEGIN PUBLIC KEY-----\n"
            b"AAEC\n"
            b"-----END PUBLIC KEY-----\n"
            b"k4.public.AAAA\n"
        )
        self.assertEqual(
            list(key_file_items(data)),
            [
                TextLine("ssh-ed25519 AAAA comment", 3),
                PemBlock("PUBLIC KEY", b"\x00\x01\x02", 4),
                TextLine("k4.public.AAAA", 7),
            ],
        )

    def test_byte_order_mark_and_crlf_accepted(self) -> None:
        """A file saved by a Windows editor (BOM, CRLF line ends) reads like any other."""
        data = b"\xef\xbb\xbf-----BEGIN PUBLIC KEY-----\r\nAAEC\r\n-----END PUBLIC KEY-----\r\n"
        self.assertEqual(list(key_file_items(data)), [PemBlock("PUBLIC KEY", b"\x00\x01\x02", 1)])

    def test_block_without_end_refused(self) -> None:
        """A PEM block that is never closed is refused, naming its label and line."""
        data = b"\n-----BEGIN PRIVATE KEY-----\nAAEC\n"
        error = self.assertRaises(KeyFileError, list, key_file_items(data))
        self.assertEqual(str(error), "PEM block PRIVATE KEY on line 2 has no END line")

    def test_block_with_headers_refused(self) -> None:
        """An old-style encrypted PEM block (with headers) is refused as encrypted."""
        data = (
            b"-----BEGIN RSA PRIVATE KEY-----\n"
            b"Proc-Type: 4,ENCRYPTED\n"
            b"AAEC\n"
            b"-----END RSA PRIVATE KEY-----\n"
        )
        error = self.assertRaises(KeyFileError, list, key_file_items(data))
        self.assertIn("encrypted keys are not supported", str(error))

    def test_block_with_bad_base64_refused(self) -> None:
        """A PEM body that is not base64 is refused without repeating it."""
        data = b"-----BEGIN PUBLIC KEY-----\nnot*base64*at*all\n-----END PUBLIC KEY-----\n"
        error = self.assertRaises(KeyFileError, list, key_file_items(data))
        self.assertEqual(str(error), "PEM block PUBLIC KEY on line 1 is not valid base64")

    def test_binary_file_refused(self) -> None:
        """A file that is not UTF-8 text is refused as such."""
        error = self.assertRaises(KeyFileError, list, key_file_items(b"\xff\xfe\x00key"))
        self.assertEqual(str(error), "not a text key file")


class PemEncodingTests(SynchronousTestCase):
    """PEM is written the way Go's encoding/pem writes it."""

    def test_go_layout(self) -> None:
        """A 64-byte key is written as BEGIN, a 64-character line, the rest, END, newline."""
        raw = bytes(range(64))
        text = encode_pem(GO_PRIVATE_KEY_LABEL, raw).decode("ascii")
        rows = text.split("\n")
        self.assertEqual(rows[0], "-----BEGIN ED25519 PRIVATE KEY-----")
        self.assertEqual([len(row) for row in rows[1:-2]], [64, 24])
        self.assertEqual(rows[-2:], ["-----END ED25519 PRIVATE KEY-----", ""])

    def test_reads_back(self) -> None:
        """What is written reads back as the same block."""
        raw = bytes(range(100))
        (block,) = key_file_items(encode_pem("PUBLIC KEY", raw))
        self.assertEqual(block, PemBlock("PUBLIC KEY", raw, 1))


class PaserkTests(SynchronousTestCase):
    """Plain PASERKs are decoded for the version asked for only."""

    def test_decoded(self) -> None:
        """A k4.local PASERK gives its version, type and key bytes."""
        raw = bytes(range(32))
        self.assertEqual(
            parse_paserk(f"k4.local.{_b64url(raw)}", 4, "line 1"), Paserk(4, "local", raw)
        )

    def test_other_version_refused(self) -> None:
        """A k2 PASERK given for version 4 is refused, naming both."""
        error = self.assertRaises(KeyFileError, parse_paserk, "k2.public.AAAA", 4, "line 3")
        self.assertEqual(str(error), "line 3 is a k2 PASERK; PASETO version 4 needs k4")

    def test_other_types_refused(self) -> None:
        """PASERK types other than local, public and secret (ids, wrapped keys) are refused."""
        for kind in ("lid", "pid", "local-wrap"):
            error = self.assertRaises(KeyFileError, parse_paserk, f"k4.{kind}.AAAA", 4, "it")
            self.assertEqual(str(error), f"it: PASERK type {kind} is not supported")

    def test_non_canonical_data_refused(self) -> None:
        """A PASERK whose data is not canonical base64url is refused without repeating it."""
        for text in ("k4.local.AB", "k4.local.A", "k4.local.AA=="):
            error = self.assertRaises(KeyFileError, parse_paserk, text, 4, "the key")
            self.assertEqual(str(error), "the key is not a valid PASERK")

    def test_shape(self) -> None:
        """Only kN.type.data text looks like a PASERK."""
        self.assertTrue(looks_like_paserk("k4.secret.AAAA"))
        for text in ("k4.secret", "ssh-ed25519 AAAA", "K4.local.AAAA", "k4.local.AA==", ""):
            self.assertFalse(looks_like_paserk(text), text)


class KeyKindTests(SynchronousTestCase):
    """Keys must be of a supported version and of the kind asked for."""

    def test_supported_versions(self) -> None:
        """Versions 4 and 2 are accepted; 1 and 3 are refused."""
        check_version(4)
        check_version(2)
        for version in (1, 3):
            error = self.assertRaises(KeyFileError, check_version, version)
            self.assertEqual(
                str(error), f"PASETO version {version} is not supported (only 4 and 2)"
            )

    def test_kind_asked_for_passes(self) -> None:
        """A key of the version, purpose and secrecy asked for is returned unchanged."""
        key = pyseto.Key.new(4, "local", bytes(32))
        self.assertIs(check_key(key, 4, "local", secret=True), key)

    def test_other_kinds_refused(self) -> None:
        """Another version, purpose or secrecy than asked for is refused."""
        key = pyseto.Key.new(4, "local", bytes(32))
        for version, purpose, secret, message in (
            (2, "local", True, "key is for PASETO version 4, expected 2"),
            (4, "public", True, "key is a local key, expected a public key"),
            (4, "local", False, "key is not a public key"),
        ):
            error = self.assertRaises(KeyFileError, check_key, key, version, purpose, secret=secret)
            self.assertEqual(str(error), message)
