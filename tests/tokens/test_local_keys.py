"""The symmetric key for vN.local tokens: hexadecimal or kN.local, exactly 32 bytes."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.local_keys import parse_local_key
from tests.helpers.paseto_keys import b64url, raw_bytes

__all__ = ["LocalKeyTests"]


class LocalKeyTests(SynchronousTestCase):
    """The symmetric key for vN.local tokens."""

    def test_hex_key(self) -> None:
        """64 hex characters load as a 32-byte local key, surrounding whitespace ignored."""
        text = "707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f"
        key = parse_local_key(f"  {text}\n", 4)
        self.assertEqual((key.version, key.purpose), (4, "local"))
        self.assertEqual(raw_bytes(key), bytes.fromhex(text))

    def test_paserk_key(self) -> None:
        """A k2.local PASERK loads for v2."""
        raw = bytes(range(32))
        key = parse_local_key(f"k2.local.{b64url(raw)}", 2)
        self.assertEqual((key.version, key.purpose), (2, "local"))
        self.assertEqual(raw_bytes(key), raw)

    def test_wrong_lengths_refused(self) -> None:
        """31- and 33-byte keys are refused, as hex and as PASERK, for v4 and v2."""
        for size in (31, 33):
            raw = bytes(range(size))
            for version in (4, 2):
                for text in (raw.hex(), f"k{version}.local.{b64url(raw)}"):
                    error = self.assertRaises(KeyFileError, parse_local_key, text, version)
                    self.assertNotIn(text, str(error))

    def test_other_versions_and_types_refused(self) -> None:
        """k3.local, k4.public and k4.secret PASERKs are not symmetric v4 keys."""
        raw = bytes(range(32))
        for text in (f"k3.local.{b64url(raw)}", f"k4.public.{b64url(raw)}", "k4.secret.AAAA"):
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
