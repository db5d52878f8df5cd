"""Check PASETO bearer tokens: strict syntax first, then cryptography, then claims.

pyseto only does the cryptography here (it is called without a deserializer). Everything it
is too lenient about is enforced by runnergw: the token's form by
:mod:`runnergw.tokens.syntax` (canonical base64url, accepted versions and purposes), the
claims by :mod:`runnergw.tokens.claims` (``exp`` required and timezone-qualified, ``nbf``,
``iat``, maximum lifetime, issuer, audience and the types of ``sub`` and ``role``).  This
module picks the keys for the token's version and purpose and remembers verified tokens.

Errors carry a short ``reason`` meant for the client. It never contains the token nor any
part of it, nor any claim value, nor a double quote (it may be put in a quoted header).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import attrs
import pyseto
from pyseto import KeyInterface

from runnergw.tokens.claims import (
    check_issuer_and_audience,
    check_time_claims,
    optional_string_claim,
    parse_claims,
)
from runnergw.tokens.errors import TokenError
from runnergw.tokens.syntax import ACCEPTABLE_VERSIONS, check_token_syntax

__all__ = ["TokenVerifier", "VerifiedToken"]

_INVALID_REASON = "token signature or encryption is invalid"


@attrs.frozen
class VerifiedToken:
    """The result of a successful verification."""

    claims: Mapping[str, Any]
    """The decoded claims (read-only)."""
    version: str
    """``v4`` or ``v2``."""
    purpose: str
    """``public`` or ``local``."""
    expires_at: float
    """The ``exp`` claim, as POSIX seconds."""
    subject: str | None
    """The ``sub`` claim, if any."""
    role: str | None
    """The ``role`` claim, if any."""


class TokenVerifier:
    """Verify bearer tokens against configured keys and claim rules, with a result cache.

    The cache maps a token string to its verified result until the token expires; every hit
    re-checks the expiry against the clock. Failures are never cached. Only tokens that
    passed every check enter the cache, so a hit needs no further syntax check; canonical
    base64url guarantees that a token has one spelling, so no variant of it shares an entry.

    Not thread-safe: use it from the reactor thread.
    """

    def __init__(
        self,
        *,
        versions: tuple[str, ...],
        local_keys: Mapping[str, Sequence[KeyInterface]],
        public_keys: Mapping[str, Sequence[KeyInterface]],
        leeway: float,
        issuer: str | None,
        audience: str | None,
        max_token_bytes: int = 8192,
        max_lifetime: float | None = None,
        clock: Callable[[], float] = time.time,
        cache_size: int = 10000,
    ) -> None:
        """Configure the verifier.

        Args:
            versions: Accepted versions, among ``v4`` and ``v2``.
            local_keys: Symmetric keys per version (``"v4"`` to keys), for ``vN.local``.
            public_keys: Ed25519 public keys per version, for ``vN.public``. Several keys
                per version are tried in turn (rotation).
            leeway: Allowed clock skew, in seconds, for ``exp``, ``nbf`` and ``iat``.
            issuer: The required ``iss`` claim, or None not to check it.
            audience: The audience that ``aud`` must name, or None not to check it.
            max_token_bytes: Longer tokens are refused before any work.
            max_lifetime: Refuse tokens whose ``exp`` is more than this many seconds after
                their ``iat`` (or now, without ``iat``); None for no cap.
            clock: Returns the current wall-clock time as POSIX seconds.
            cache_size: How many verified tokens to remember; 0 disables the cache.

        Raises:
            ValueError: A setting is out of range, or a key does not fit its version and
                purpose. Keys for versions not in ``versions`` are ignored.
        """
        _check_settings(versions, leeway, max_token_bytes, max_lifetime, cache_size)
        self._versions = frozenset(versions)
        self._keys = _keys_by_header(versions, local_keys, public_keys)
        if not self._keys:
            raise ValueError("no key configured for any accepted version")
        self._purposes = frozenset(purpose for _, purpose in self._keys)
        self._leeway = float(leeway)
        self._issuer = issuer
        self._audience = audience
        self._max_token_bytes = max_token_bytes
        self._max_lifetime = max_lifetime
        self._clock = clock
        self._cache_size = cache_size
        self._cache: dict[str, tuple[float, VerifiedToken]] = {}

    def verify(self, token: str) -> VerifiedToken:
        """Verify a token and return its claims.

        Args:
            token: The token, without the ``Bearer`` prefix.

        Returns:
            The verified token.

        Raises:
            TokenError: The token is refused; ``code`` says why.
        """
        cached = self._cache.get(token)
        if cached is not None:
            if self._clock() > cached[0]:
                del self._cache[token]
                raise TokenError("expired", "token expired")
            return cached[1]
        version, purpose = check_token_syntax(
            token,
            versions=self._versions,
            purposes=self._purposes,
            max_bytes=self._max_token_bytes,
        )
        verified = self._verify_uncached(token, version, purpose)
        self._remember(token, verified)
        return verified

    def _verify_uncached(self, token: str, version: str, purpose: str) -> VerifiedToken:
        """Check the cryptography and the claims of a syntactically valid token."""
        keys = self._keys.get((version, purpose))
        if not keys:
            raise TokenError("unsupported_purpose", f"{version}.{purpose} tokens are not accepted")
        try:
            payload = pyseto.decode(list(keys), token).payload
        except Exception:
            raise TokenError("invalid", _INVALID_REASON) from None
        if not isinstance(payload, bytes):
            raise TokenError("invalid", _INVALID_REASON)
        claims = parse_claims(payload)
        expires = check_time_claims(
            claims, clock=self._clock, leeway=self._leeway, max_lifetime=self._max_lifetime
        )
        check_issuer_and_audience(claims, issuer=self._issuer, audience=self._audience)
        return VerifiedToken(
            claims=MappingProxyType(claims),
            version=version,
            purpose=purpose,
            expires_at=expires,
            subject=optional_string_claim(claims, "sub"),
            role=optional_string_claim(claims, "role"),
        )

    def _remember(self, token: str, verified: VerifiedToken) -> None:
        """Cache a verified token until it expires, evicting the oldest entry when full."""
        if self._cache_size <= 0:
            return
        while len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[token] = (verified.expires_at + self._leeway, verified)


def _check_settings(
    versions: tuple[str, ...],
    leeway: float,
    max_token_bytes: int,
    max_lifetime: float | None,
    cache_size: int,
) -> None:
    """Refuse verifier settings that cannot work."""
    if not versions:
        raise ValueError("no PASETO version accepted")
    for version in versions:
        if version not in ACCEPTABLE_VERSIONS:
            raise ValueError(f"PASETO version {version!r} is not supported (v4 or v2)")
    if leeway < 0:
        raise ValueError("leeway must not be negative")
    if max_token_bytes <= 0:
        raise ValueError("max_token_bytes must be positive")
    if max_lifetime is not None and max_lifetime <= 0:
        raise ValueError("max_lifetime must be positive, or None for no cap")
    if cache_size < 0:
        raise ValueError("cache_size must not be negative")


def _keys_by_header(
    versions: tuple[str, ...],
    local_keys: Mapping[str, Sequence[KeyInterface]],
    public_keys: Mapping[str, Sequence[KeyInterface]],
) -> dict[tuple[str, str], tuple[KeyInterface, ...]]:
    """Group the keys of accepted versions by ``(version, purpose)``, checking each key."""
    grouped: dict[tuple[str, str], tuple[KeyInterface, ...]] = {}
    for purpose, by_version in (("local", local_keys), ("public", public_keys)):
        for version in versions:
            keys = tuple(by_version.get(version, ()))
            for key in keys:
                if f"v{key.version}" != version or key.purpose != purpose:
                    raise ValueError(
                        f"a v{key.version}.{key.purpose} key was given for {version}.{purpose}"
                    )
            if keys:
                grouped[(version, purpose)] = keys
    return grouped
