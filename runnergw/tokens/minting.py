"""Mint PASETO bearer tokens in the format the Go ``runner-gateway`` tool issues.

Claims are a JSON object whose ``iat``, ``nbf`` and ``exp`` are RFC 3339 UTC strings with a
``+00:00`` offset and second precision; there is no footer and no implicit assertion.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

import pyseto
from pyseto import KeyInterface

__all__ = ["RESERVED_CLAIMS", "format_rfc3339", "mint_token"]

RESERVED_CLAIMS: frozenset[str] = frozenset({"iat", "nbf", "exp", "sub", "role", "iss", "aud"})
"""Claims that :func:`mint_token` sets itself and that ``extra`` may not contain."""


def format_rfc3339(moment: float) -> str:
    """Format POSIX seconds as an RFC 3339 UTC date-time, to the second.

    Args:
        moment: POSIX seconds; the fraction is dropped.

    Returns:
        Text such as ``2022-01-01T00:00:00+00:00``.
    """
    return datetime.fromtimestamp(moment, timezone.utc).replace(microsecond=0).isoformat()


def _check_key(key: KeyInterface) -> None:
    """Refuse keys that cannot produce a token runnergw accepts."""
    if key.version not in (2, 4):
        raise ValueError(f"PASETO version {key.version} is not supported (v4 or v2)")
    if not key.is_secret:
        raise ValueError("a public key cannot sign tokens; use the private key")


def _claims(
    *,
    subject: str | None,
    role: str | None,
    lifetime: float,
    now: float,
    issuer: str | None,
    audience: str | None,
    extra: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Assemble the claims of a new token."""
    if lifetime <= 0:
        raise ValueError("lifetime must be positive")
    clash = RESERVED_CLAIMS.intersection(extra or {})
    if clash:
        raise ValueError(f"extra claims may not set {', '.join(sorted(clash))}")
    claims: dict[str, Any] = dict(extra or {})
    claims["iat"] = format_rfc3339(now)
    claims["nbf"] = format_rfc3339(now)
    claims["exp"] = format_rfc3339(now + lifetime)
    optional = {"sub": subject, "role": role, "iss": issuer, "aud": audience}
    claims.update({name: value for name, value in optional.items() if value is not None})
    return claims


def mint_token(
    key: KeyInterface,
    *,
    subject: str | None,
    role: str | None,
    lifetime: float,
    now: float,
    issuer: str | None = None,
    audience: str | None = None,
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Create a token.

    The version and purpose follow the key: an Ed25519 signing key gives ``vN.public``, a
    symmetric key gives ``vN.local``.

    Args:
        key: A signing key (from ``load_signing_key``) or a symmetric key (from
            ``parse_local_key``), of version 4 or 2.
        subject: The ``sub`` claim, omitted when None.
        role: The ``role`` claim, omitted when None.
        lifetime: Seconds from ``now`` to ``exp``; must be positive.
        now: The issue time, as POSIX seconds (``iat`` and ``nbf``).
        issuer: The ``iss`` claim, omitted when None.
        audience: The ``aud`` claim, omitted when None.
        extra: Further claims; they may not include any of :data:`RESERVED_CLAIMS`.

    Returns:
        The token, e.g. ``v4.public.…``.

    Raises:
        ValueError: The key cannot sign or encrypt, ``lifetime`` is not positive, or
            ``extra`` repeats a reserved claim.
    """
    _check_key(key)
    claims = _claims(
        subject=subject,
        role=role,
        lifetime=lifetime,
        now=now,
        issuer=issuer,
        audience=audience,
        extra=extra,
    )
    text = json.dumps(claims, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    payload = text.encode("utf-8")
    return pyseto.encode(key, payload).decode("ascii")
