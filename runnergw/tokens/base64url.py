"""Canonical unpadded base64url, the encoding of PASETO tokens, PASERKs and JWT segments.

The standard library decoder is lenient: it accepts padding and ignores non-zero trailing
bits, so that several texts decode to the same bytes.  The token verifiers refuse every
spelling but the canonical one, so that a token has one text form (and one cache entry).
"""

from __future__ import annotations

import base64
import re

__all__ = ["decode_canonical_base64url"]

_BASE64URL_ALPHABET = re.compile(r"[A-Za-z0-9_-]*")


def decode_canonical_base64url(text: str) -> bytes:
    """Decode unpadded base64url, accepting only its one canonical spelling.

    Padding, characters outside ``[A-Za-z0-9_-]``, impossible lengths and non-zero trailing
    bits are all refused, so that each byte string has exactly one text form.

    Args:
        text: The encoded text.

    Returns:
        The decoded bytes.

    Raises:
        ValueError: The text is not canonical unpadded base64url.
    """
    if len(text) % 4 == 1 or _BASE64URL_ALPHABET.fullmatch(text) is None:
        raise ValueError("not canonical unpadded base64url")
    decoded = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if base64.urlsafe_b64encode(decoded).rstrip(b"=") != text.encode("ascii"):
        raise ValueError("not canonical unpadded base64url")
    return decoded
