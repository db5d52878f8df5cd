"""Verify the two JWTs the SaaS sends with every pipeline request.

``Authorization: Bearer <server JWT>`` says the request comes from the SaaS;
``X-User-Token: <user JWT>`` names the user (``sub``) and their plan (``role``). Both are
RS256 JWTs signed by the SaaS private key and are verified with its public key.

pyjwt does the signature check, with the algorithm list fixed to RS256: ``alg: none``, HMAC
tokens signed with the public key as a secret, and every other algorithm are refused. Key
hints in the token header (``kid``, ``jku``, ``x5u``, ``jwk``) are ignored; the configured
key is the only one ever used. pyjwt reads the real clock, so the time claims (``exp``,
``nbf``, ``iat`` and the age of the user token) are checked here against the injected clock.

Errors carry a short ``detail`` for the client, in the spirit of the FastAPI node this
replaces. It never contains a token, any part of one, or a claim value.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import attrs
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from runnergw.tokens.base64url import decode_canonical_base64url

__all__ = ["SaasCaller", "SaasTokenError", "SaasTokenVerifier"]

_ALGORITHMS = ["RS256"]
_COMPACT_JWS = re.compile(r"[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+")


class SaasTokenError(Exception):
    """A server or user token was refused.

    Attributes:
        code: A stable machine-readable code, ``server_`` or ``user_`` followed by one of
            ``missing``, ``malformed``, ``too_large``, ``invalid``, ``missing_exp``,
            ``bad_claims``, ``expired``, ``not_yet_valid``, ``issued_in_future``,
            ``wrong_issuer``, ``wrong_audience`` or (user token only) ``too_old``.
        detail: Short text that is safe to send to the client.
        status: The HTTP status to answer with (401).
    """

    def __init__(self, code: str, detail: str, status: int = 401) -> None:
        super().__init__(code, detail)
        self.code = code
        self.detail = detail
        self.status = status

    def __str__(self) -> str:
        return self.detail


@attrs.frozen
class SaasCaller:
    """The result of a successful verification of both tokens."""

    subject: str | None
    """The user token's ``sub``."""
    role: str | None
    """The user token's ``role`` (the user's plan)."""
    server_claims: Mapping[str, Any] = attrs.field(repr=False)
    """The server token's claims (read-only)."""
    user_claims: Mapping[str, Any] = attrs.field(repr=False)
    """The user token's claims (read-only)."""


@attrs.frozen
class _Kind:
    """Which of the two tokens is being checked, and how to word its errors."""

    prefix: str
    """``server`` or ``user``, the start of error codes."""
    label: str
    """``Server token`` or ``User token``."""

    def error(self, code: str, reason: str) -> SaasTokenError:
        """An error about this token, worded as the FastAPI node did
        (``Invalid server authentication: Signature has expired``)."""
        return SaasTokenError(f"{self.prefix}_{code}",
                              f"Invalid {self.prefix} authentication: {reason}")

    def invalid(self, code: str = "invalid") -> SaasTokenError:
        """The generic refusal, for anything wrong with the token's form or signature."""
        return self.error(code, "Signature verification failed")


_SERVER = _Kind("server", "Server token")
_USER = _Kind("user", "User token")


@attrs.frozen
class _Checked:
    """A token whose signature and static claims passed; its time claims are kept for re-checks."""

    claims: Mapping[str, Any]
    expires: float
    not_before: float | None
    issued: float | None


def _numeric_date(claims: Mapping[str, Any], name: str, kind: _Kind) -> float | None:
    """Read a NumericDate claim (a finite JSON number), or None when it is absent."""
    if name not in claims:
        return None
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise kind.invalid("bad_claims")
    number = float(value)
    if not math.isfinite(number):
        raise kind.invalid("bad_claims")
    return number


def _bearer_token(authorization: str | None) -> str:
    """Take the token out of an ``Authorization: Bearer …`` header."""
    if authorization is None or not authorization.strip(" \t"):
        raise SaasTokenError("server_missing", "Not authenticated")
    scheme, _, token = authorization.strip(" \t").partition(" ")
    token = token.strip(" \t")
    if scheme.lower() != "bearer" or not token:
        raise SaasTokenError("server_malformed", "Invalid authentication credentials")
    return token


class SaasTokenVerifier:
    """Verify the SaaS server and user tokens, with a cache of verified tokens.

    The cache maps each token string to its verified claims until the token expires. Time
    rules (expiry, not-before, issued-in-the-future, the user token's age) are re-checked
    against the clock on every hit; failures are never cached. Only tokens in canonical
    compact form are verified, so a token has a single spelling and a single cache entry.

    Not thread-safe: use it from the reactor thread.
    """

    def __init__(
        self,
        public_key: RSAPublicKey,
        *,
        max_user_token_age: float = 3600,
        issuer: str | None,
        audience: str | None,
        leeway: float = 30,
        clock: Callable[[], float] = time.time,
        max_token_bytes: int = 8192,
        cache_size: int = 10000,
    ) -> None:
        """Configure the verifier.

        Args:
            public_key: The SaaS RSA public key.
            max_user_token_age: Refuse a user token whose ``iat`` is more than this many
                seconds in the past. A user token without ``iat`` is accepted.
            issuer: The required ``iss`` claim of both tokens, or None not to check it.
            audience: The audience that ``aud`` must name, or None not to check ``aud``.
            leeway: Allowed clock skew, in seconds, for ``exp``, ``nbf`` and ``iat``.
            clock: Returns the current wall-clock time as POSIX seconds.
            max_token_bytes: Longer tokens are refused before any parsing.
            cache_size: How many verified tokens to remember; 0 disables the cache.

        Raises:
            TypeError: ``public_key`` is not an RSA public key.
            ValueError: A setting is out of range.
        """
        if not isinstance(public_key, RSAPublicKey):
            raise TypeError("the SaaS public key must be an RSA public key")
        if max_user_token_age <= 0:
            raise ValueError("max_user_token_age must be positive")
        if leeway < 0:
            raise ValueError("leeway must not be negative")
        if max_token_bytes <= 0:
            raise ValueError("max_token_bytes must be positive")
        if cache_size < 0:
            raise ValueError("cache_size must not be negative")
        self._public_key = public_key
        self._max_user_token_age = float(max_user_token_age)
        self._issuer = issuer
        self._audience = audience
        self._leeway = float(leeway)
        self._clock = clock
        self._max_token_bytes = max_token_bytes
        self._cache_size = cache_size
        self._cache: dict[tuple[str, str], _Checked] = {}

    def verify(self, authorization: str | None, user_token: str | None) -> SaasCaller:
        """Verify both tokens of a request.

        Args:
            authorization: The ``Authorization`` header, or None when absent.
            user_token: The ``X-User-Token`` header, or None when absent.

        Returns:
            The caller: the user's subject and role, and the claims of both tokens.

        Raises:
            SaasTokenError: A token is missing or refused; ``code`` says which and why,
                ``detail`` is meant for the client.
        """
        server = self._checked(_bearer_token(authorization), _SERVER)
        if "role" in server.claims:
            # Both tokens are signed with the same key: without this a user who can read
            # their own token could present it as the SaaS's and call the node directly.
            raise _SERVER.error("user_token_as_server",
                                "a user token cannot stand for the server token")
        if user_token is None or not user_token.strip(" \t"):
            raise SaasTokenError("user_missing", "User token missing")
        user = self._checked(user_token.strip(" \t"), _USER)
        return SaasCaller(
            subject=user.claims["sub"],
            role=user.claims["role"],
            server_claims=server.claims,
            user_claims=user.claims,
        )

    def _checked(self, token: str, kind: _Kind) -> _Checked:
        """Verify one token (or find it in the cache) and apply the time rules."""
        key = (kind.prefix, token)
        checked = self._cache.get(key)
        if checked is None:
            checked = self._verify_uncached(token, kind)
            self._check_times(checked, kind)
            self._remember(key, checked)
            return checked
        try:
            self._check_times(checked, kind)
        except SaasTokenError as e:
            if e.code.endswith(("_expired", "_too_old")):
                del self._cache[key]
            raise
        return checked

    def _verify_uncached(self, token: str, kind: _Kind) -> _Checked:
        """Check the form, the signature and the static claims of a token."""
        self._check_syntax(token, kind)
        try:
            claims = jwt.decode(
                token,
                self._public_key,
                algorithms=_ALGORITHMS,
                issuer=self._issuer,
                audience=self._audience,
                options={
                    "require": ["exp"],
                    "verify_signature": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_iss": self._issuer is not None,
                    "verify_aud": self._audience is not None,
                    "verify_sub": False,
                    "verify_jti": False,
                },
            )
        except jwt.MissingRequiredClaimError as e:
            raise self._missing_claim(e.claim, kind) from None
        except jwt.InvalidIssuerError:
            raise kind.error("wrong_issuer", f"{kind.label} has the wrong issuer") from None
        except jwt.InvalidAudienceError:
            raise kind.error("wrong_audience", f"{kind.label} has the wrong audience") from None
        except (jwt.PyJWTError, ValueError, TypeError):
            raise kind.invalid() from None
        if kind is _USER:
            for name in ("sub", "role"):
                value = claims.get(name)
                if not isinstance(value, str) or not value:
                    raise kind.error("bad_claims", f"{kind.label} has no {name}")
        expires = _numeric_date(claims, "exp", kind)
        if expires is None:
            raise self._missing_claim("exp", kind)
        return _Checked(
            claims=MappingProxyType(claims),
            expires=expires,
            not_before=_numeric_date(claims, "nbf", kind),
            issued=_numeric_date(claims, "iat", kind),
        )

    def _check_syntax(self, token: str, kind: _Kind) -> None:
        """Refuse oversized and non-canonical tokens before any parsing."""
        if len(token) > self._max_token_bytes:
            raise kind.invalid("too_large")
        if _COMPACT_JWS.fullmatch(token) is None:
            raise kind.invalid("malformed")
        try:
            for segment in token.split("."):
                decode_canonical_base64url(segment)
        except ValueError:
            raise kind.invalid("malformed") from None

    def _missing_claim(self, claim: str, kind: _Kind) -> SaasTokenError:
        """The error for a required claim that is absent."""
        if claim == "exp":
            return kind.error("missing_exp", f"{kind.label} has no expiry")
        if claim == "iss":
            return kind.error("wrong_issuer", f"{kind.label} has the wrong issuer")
        if claim == "aud":
            return kind.error("wrong_audience", f"{kind.label} has the wrong audience")
        return kind.invalid("bad_claims")

    def _check_times(self, checked: _Checked, kind: _Kind) -> None:
        """Apply the ``exp``, ``nbf`` and ``iat`` rules, and the user token's maximum age."""
        now = self._clock()
        if now >= checked.expires + self._leeway:
            raise kind.error("expired", "Signature has expired")
        if checked.not_before is not None and now + self._leeway < checked.not_before:
            raise kind.error("not_yet_valid", "The token is not yet valid (nbf)")
        if checked.issued is not None:
            if checked.issued > now + self._leeway:
                raise kind.error("issued_in_future", "The token is not yet valid (iat)")
            if kind is _USER and now - checked.issued > self._max_user_token_age:
                raise SaasTokenError("user_too_old", "Token issued too long ago")

    def _remember(self, key: tuple[str, str], checked: _Checked) -> None:
        """Cache a verified token, evicting the oldest entry when full."""
        if self._cache_size <= 0:
            return
        while len(self._cache) >= self._cache_size:
            del self._cache[next(iter(self._cache))]
        self._cache[key] = checked
