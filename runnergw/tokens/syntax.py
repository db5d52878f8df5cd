"""Strict token syntax, checked before any cryptography is attempted.

pyseto is lenient about the form of a token; this module is not.  A token must be ASCII, no
longer than the configured maximum, split into three or four parts, of an accepted version
(v4 or v2 only, never v1 or v3) and purpose, and its body and footer must be canonical
unpadded base64url (no padding, no non-zero trailing bits), the body long enough for its
version and purpose.  Canonical spelling means each token has one text form, so no variant
of a verified token can share its cache entry.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from runnergw.tokens.base64url import decode_canonical_base64url
from runnergw.tokens.errors import TokenError

__all__ = ["ACCEPTABLE_VERSIONS", "check_token_syntax"]

ACCEPTABLE_VERSIONS: tuple[str, ...] = ("v4", "v2")
"""The only PASETO versions runnergw ever accepts; v1 and v3 are always refused."""

_KNOWN_VERSIONS = ("v1", "v2", "v3", "v4")
_PURPOSES = ("local", "public")
_MINIMUM_BODY_BYTES: Mapping[tuple[str, str], int] = {
    ("v4", "local"): 32 + 32,
    ("v4", "public"): 64,
    ("v2", "local"): 24 + 16,
    ("v2", "public"): 64,
}


def _segment_is_canonical(segment: str) -> bool:
    """Tell whether a token segment is canonical unpadded base64url."""
    try:
        decode_canonical_base64url(segment)
    except ValueError:
        return False
    return True


def _check_header(parts: list[str], versions: Collection[str], purposes: Collection[str]) -> None:
    """Check the version and purpose of a split token."""
    version, purpose = parts[0], parts[1]
    if version not in _KNOWN_VERSIONS:
        raise TokenError("malformed", "token is not a PASETO token")
    if version not in versions or version not in ACCEPTABLE_VERSIONS:
        raise TokenError("unsupported_version", f"{version} tokens are not accepted")
    if purpose not in _PURPOSES:
        raise TokenError("malformed", "token purpose is not local or public")
    if purpose not in purposes:
        raise TokenError("unsupported_purpose", f"{version}.{purpose} tokens are not accepted")


def _check_segments(parts: list[str]) -> None:
    """Check that the body and the footer are canonical base64url and the body long enough."""
    for segment in parts[2:]:
        if not segment or not _segment_is_canonical(segment):
            raise TokenError("malformed", "token is not canonical unpadded base64url")
    body_bytes = len(parts[2]) * 3 // 4
    if body_bytes < _MINIMUM_BODY_BYTES[(parts[0], parts[1])]:
        raise TokenError("malformed", "token is too short")


def check_token_syntax(
    token: str, *, versions: Collection[str], purposes: Collection[str], max_bytes: int
) -> tuple[str, str]:
    """Check a token's form before any cryptography is attempted.

    Args:
        token: The token, without the ``Bearer`` prefix.
        versions: Accepted versions (``v4``, ``v2``); v1 and v3 are refused regardless.
        purposes: Accepted purposes (``local``, ``public``).
        max_bytes: The largest accepted token, in bytes.

    Returns:
        ``(version, purpose)``, e.g. ``("v4", "public")``.

    Raises:
        TokenError: With code ``too_large``, ``malformed``, ``unsupported_version`` or
            ``unsupported_purpose``.
    """
    if len(token) > max_bytes:
        raise TokenError("too_large", "token is too large")
    if not token.isascii():
        raise TokenError("malformed", "token is not ASCII")
    parts = token.split(".")
    if len(parts) not in (3, 4):
        raise TokenError("malformed", "token is not a PASETO token")
    _check_header(parts, versions, purposes)
    _check_segments(parts)
    return parts[0], parts[1]
