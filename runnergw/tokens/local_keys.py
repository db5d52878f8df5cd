"""The symmetric key for ``vN.local`` tokens: 64 hexadecimal characters or a ``kN.local`` PASERK.

pyseto takes ``v4.local`` keys of any length, so the length is checked here: exactly 32
bytes, whatever the spelling.  Error messages never contain the key text.
"""

from __future__ import annotations

import re

import pyseto
from pyseto import KeyInterface

from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.key_formats import check_key, check_version, looks_like_paserk, parse_paserk

__all__ = ["LOCAL_KEY_BYTES", "parse_local_key"]

LOCAL_KEY_BYTES = 32
"""The length of a ``v4.local`` or ``v2.local`` key."""

_HEX = re.compile(r"[0-9a-fA-F]+")


def _local_key_bytes(text: str, version: int) -> bytes:
    """Decode a symmetric key given as hexadecimal or as a ``kN.local`` PASERK."""
    if _HEX.fullmatch(text):
        if len(text) != 2 * LOCAL_KEY_BYTES:
            raise KeyFileError(
                f"a symmetric key must be 64 hexadecimal characters, not {len(text)}"
            )
        return bytes.fromhex(text)
    if not looks_like_paserk(text):
        raise KeyFileError(
            f"a symmetric key must be 64 hexadecimal characters or a k{version}.local PASERK"
        )
    paserk = parse_paserk(text, version, "the symmetric key")
    if paserk.kind != "local":
        raise KeyFileError(
            f"the symmetric key is a {paserk.kind} PASERK; expected k{version}.local"
        )
    if len(paserk.data) != LOCAL_KEY_BYTES:
        raise KeyFileError(f"a symmetric key must be 32 bytes, not {len(paserk.data)}")
    return paserk.data


def parse_local_key(text: str, version: int) -> KeyInterface:
    """Parse the symmetric key for ``vN.local`` tokens.

    Args:
        text: 64 hexadecimal characters, or a ``kN.local`` PASERK; surrounding whitespace is
            ignored.
        version: The PASETO version the key encrypts (4 or 2).

    Returns:
        A ``local``-purpose key of exactly 32 bytes.

    Raises:
        KeyFileError: The text is not a 32-byte key of the right version. The message never
            contains the text.
    """
    check_version(version)
    raw = _local_key_bytes(text.strip(), version)
    key = pyseto.Key.new(version, "local", raw)
    return check_key(key, version, "local", secret=True)
