"""The claim checks of a verified token, and the RFC 3339 times they are written in.

A token's payload must be one JSON object (no repeated names, no ``NaN``).  ``exp`` is
required; ``exp``, ``nbf`` and ``iat`` are RFC 3339 date-times with a timezone, as the Go
``runner-gateway`` tool writes them, and are checked against the clock with a leeway and an
optional maximum lifetime.  ``iss`` and ``aud`` are checked when configured; ``sub`` and
``role`` must be strings when present.

Every refusal is a :class:`~runnergw.tokens.errors.TokenError` whose reason never repeats a
claim value.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Any

from runnergw.tokens.errors import TokenError

__all__ = [
    "check_issuer_and_audience",
    "check_time_claims",
    "optional_string_claim",
    "parse_claims",
    "parse_rfc3339",
]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


def parse_rfc3339(value: str) -> float:
    """Parse an RFC 3339 date-time that has a timezone (``Z`` or ``±hh:mm``).

    Up to nine fractional digits are allowed, as Go writes them; digits past the sixth are
    dropped.

    Args:
        value: The text, e.g. ``2022-01-01T00:00:00+00:00``.

    Returns:
        POSIX seconds.

    Raises:
        ValueError: The text is not such a date-time.
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError("not an RFC 3339 date-time with a timezone")
    year, month, day, hour, minute, second = (int(match.group(n)) for n in range(1, 7))
    micros = int((match.group(7) or "0")[:6].ljust(6, "0"))
    offset = timedelta(0)
    if match.group(9):
        offset = timedelta(hours=int(match.group(10)), minutes=int(match.group(11)))
        if match.group(9) == "-":
            offset = -offset
    moment = datetime(year, month, day, hour, minute, second, micros, tzinfo=timezone(offset))
    return moment.timestamp()


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """Build a JSON object, refusing repeated member names."""
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _reject_constant(_name: str) -> Any:
    """Refuse the non-standard JSON constants NaN and Infinity."""
    raise ValueError("non-standard JSON constant")


def parse_claims(payload: bytes) -> dict[str, Any]:
    """Decode a token payload as one JSON object.

    Repeated member names and the non-standard constants ``NaN`` and ``Infinity`` are
    refused.

    Args:
        payload: The decrypted or signature-checked payload.

    Returns:
        The claims.

    Raises:
        TokenError: With code ``bad_claims``.
    """
    try:
        claims = json.loads(
            payload.decode("utf-8"),
            object_pairs_hook=_reject_duplicates,
            parse_constant=_reject_constant,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise TokenError("bad_claims", "token claims are not valid JSON") from None
    if not isinstance(claims, dict):
        raise TokenError("bad_claims", "token claims are not a JSON object")
    return claims


def _claim_time(claims: Mapping[str, Any], name: str) -> float | None:
    """Read a date-time claim, or None when it is absent."""
    if name not in claims:
        return None
    value = claims[name]
    try:
        if not isinstance(value, str):
            raise ValueError("not a string")
        return parse_rfc3339(value)
    except (ValueError, OverflowError):
        raise TokenError(
            "bad_claims", f"claim {name} must be an RFC 3339 date-time with a timezone"
        ) from None


def optional_string_claim(claims: Mapping[str, Any], name: str) -> str | None:
    """Read a claim that must be a string when present.

    Args:
        claims: The decoded claims.
        name: The claim, e.g. ``sub``.

    Returns:
        The string, or None when the claim is absent or null.

    Raises:
        TokenError: With code ``bad_claims`` when the claim is of another type.
    """
    value = claims.get(name)
    if value is not None and not isinstance(value, str):
        raise TokenError("bad_claims", f"claim {name} must be a string")
    return value


def _audience_matches(value: Any, audience: str) -> bool:
    """Tell whether an ``aud`` claim (a string or a list of strings) names ``audience``."""
    if isinstance(value, str):
        return value == audience
    if isinstance(value, list):
        return audience in [item for item in value if isinstance(item, str)]
    return False


def check_time_claims(
    claims: Mapping[str, Any],
    *,
    clock: Callable[[], float],
    leeway: float,
    max_lifetime: float | None,
) -> float:
    """Apply the ``exp``, ``nbf``, ``iat`` and lifetime rules.

    Args:
        claims: The decoded claims.
        clock: Returns the current wall-clock time as POSIX seconds; called once, after
            the time claims have been read.
        leeway: Allowed clock skew, in seconds, for ``exp``, ``nbf`` and ``iat``.
        max_lifetime: Refuse tokens whose ``exp`` is more than this many seconds after
            their ``iat`` (or now, without ``iat``); None for no cap.

    Returns:
        The ``exp`` claim, as POSIX seconds.

    Raises:
        TokenError: With code ``missing_exp``, ``bad_claims``, ``expired``,
            ``not_yet_valid`` or ``issued_in_future``.
    """
    expires = _claim_time(claims, "exp")
    if expires is None:
        raise TokenError("missing_exp", "token has no expiry (exp)")
    not_before = _claim_time(claims, "nbf")
    issued = _claim_time(claims, "iat")
    now = clock()
    if now > expires + leeway:
        raise TokenError("expired", "token expired")
    if not_before is not None and now + leeway < not_before:
        raise TokenError("not_yet_valid", "token is not valid yet")
    if issued is not None and issued > now + leeway:
        raise TokenError("issued_in_future", "token was issued in the future")
    if max_lifetime is not None:
        start = issued if issued is not None else now
        if expires - start > max_lifetime:
            raise TokenError("bad_claims", "token lifetime exceeds the allowed maximum")
    return expires


def check_issuer_and_audience(
    claims: Mapping[str, Any], *, issuer: str | None, audience: str | None
) -> None:
    """Apply the issuer and audience rules.

    Args:
        claims: The decoded claims.
        issuer: The required ``iss`` claim, or None not to check it.
        audience: The audience that ``aud`` must name (as a string or in a list), or None
            not to check it.

    Raises:
        TokenError: With code ``wrong_issuer`` or ``wrong_audience``.
    """
    if issuer is not None and claims.get("iss") != issuer:
        raise TokenError("wrong_issuer", "token was not issued by the expected issuer")
    if audience is not None and not _audience_matches(claims.get("aud"), audience):
        raise TokenError("wrong_audience", "token is not meant for this audience")
