"""Canonical unpadded base64url: each byte string has exactly one accepted spelling."""

from __future__ import annotations

import base64

from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.base64url import decode_canonical_base64url

__all__ = ["Base64urlTests"]


def _b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Base64urlTests(SynchronousTestCase):
    """The canonical base64url decoder used for PASERKs and tokens."""

    def test_canonical_round_trip(self) -> None:
        """Unpadded base64url of any length decodes."""
        for size in range(0, 8):
            data = bytes(range(250, 250 - size, -1))
            self.assertEqual(decode_canonical_base64url(_b64url(data)), data)

    def test_non_canonical_refused(self) -> None:
        """Padding, other alphabets, impossible lengths and non-zero trailing bits are refused."""
        for text in ("AA==", "AB", "A", "AA+/", "AA/_", "AA A", "AAA\n"):
            self.assertRaises(ValueError, decode_canonical_base64url, text)
