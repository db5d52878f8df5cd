"""The ``token`` filter: a PASETO bearer token must be presented and valid."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Identity, Reject
from runnergw.chain.interfaces import IFilter
from runnergw.tokens.errors import TokenError
from runnergw.tokens.verifier import TokenVerifier, VerifiedToken

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["TokenFilter"]

_IDENTITIES_KEPT = 10000
"""Identities remembered, one per verified token (as many as the verifier's cache keeps)."""


def _token_id(token: str) -> str:
    """``token:`` and 16 hex digits of the token's SHA-256: names a token in limits, usage
    and the audit trail when it has no subject, and cannot be turned back into it."""
    return "token:" + hashlib.sha256(token.encode()).hexdigest()[:16]


def _challenge(description: str) -> tuple[tuple[str, str], ...]:
    text = description.replace('"', "'")
    return (("WWW-Authenticate",
             f'Bearer realm="runnergw", error="invalid_token", error_description="{text}"'),)


@implementer(IFilter)
class TokenFilter:
    """Checks ``Authorization: Bearer vN.(public|local).…`` and records who is calling.

    The token itself never leaves this filter: not in errors, logs or the audit trail.
    """

    name = "token"

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier
        self._identities: dict[str, tuple[VerifiedToken, Identity]] = {}
        """Token → the identity made of its verification: a token the verifier answers from
        its cache (the same result) gets the same identity, without hashing the token again."""

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> TokenFilter:
        """Needs the PASETO keys of the ``paseto`` section."""
        if context.verifier is None:
            raise ValueError("the token filter needs paseto.publicPath or paseto.secretKey")
        return cls(context.verifier)

    def request_headers(self, exchange: Exchange) -> None:
        """Verify the bearer token, or refuse with 401."""
        header = exchange.headers.get("authorization")
        if header is None:
            raise Reject(401, "missing bearer token",
                         headers=(("WWW-Authenticate", 'Bearer realm="runnergw"'),),
                         reason="token missing")
        scheme, _, token = header.strip(" \t").partition(" ")
        token = token.strip(" \t")
        if scheme.lower() != "bearer" or not token:
            raise Reject(401, "expected an Authorization: Bearer token",
                         headers=_challenge("expected a Bearer token"),
                         reason="token malformed")
        try:
            verified = self.verifier.verify(token)
        except TokenError as e:
            raise Reject(401, e.reason, headers=_challenge(e.reason),
                         reason=f"token {e.code}") from None
        known = self._identities.get(token)
        if known is not None and known[0] is verified:
            exchange.identity = known[1]
            return
        identity = Identity(
            subject=verified.subject,
            role=verified.role,
            claims=verified.claims,
            token_kind=f"{verified.version}.{verified.purpose}",
            token_id=_token_id(token),
        )
        identities = self._identities
        if known is None and len(identities) >= _IDENTITIES_KEPT:
            del identities[next(iter(identities))]
        identities[token] = (verified, identity)
        exchange.identity = identity
