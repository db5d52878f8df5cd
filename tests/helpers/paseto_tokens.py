"""A settable clock, keys for v4 and v2, and fresh tokens for the token verifier tests.

``VerifierTestCase`` makes signing, public and local keys for both versions, a clock set to
:data:`NOW` (when :func:`token_claims` says the tokens were issued), a verifier with
overridable settings, and ``assertRefused``, which also checks that the reason hides the
token.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any

import pyseto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyseto import KeyInterface
from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import TokenError
from runnergw.tokens.local_keys import parse_local_key
from runnergw.tokens.signing_keys import public_key_from_signing_key
from runnergw.tokens.verifier import TokenVerifier

__all__ = [
    "HOUR",
    "NOW",
    "Clock",
    "VerifierTestCase",
    "encode_token",
    "iso",
    "new_signing_key",
    "token_claims",
]

NOW = 1_700_000_000.0
"""When the test tokens are issued, and where the clock starts."""

HOUR = 3600.0
"""The test tokens' lifetime."""


class Clock:
    """A settable wall clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def iso(moment: float) -> str:
    """RFC 3339 UTC text for POSIX seconds."""
    return datetime.fromtimestamp(moment, timezone.utc).isoformat()


def token_claims(**changes: Any) -> dict[str, Any]:
    """Typical claims for a token issued now, with changes; a None value drops the claim."""
    claims: dict[str, Any] = {
        "iat": iso(NOW),
        "nbf": iso(NOW),
        "exp": iso(NOW + HOUR),
        "sub": "alice",
        "role": "user",
    }
    claims.update(changes)
    return {name: value for name, value in claims.items() if value is not None}


def encode_token(key: KeyInterface, payload: Any, footer: bytes = b"") -> str:
    """A token carrying ``payload`` (JSON-encoded unless it is bytes)."""
    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode("utf-8")
    return pyseto.encode(key, data, footer=footer).decode("ascii")


def new_signing_key(version: int) -> KeyInterface:
    """A fresh Ed25519 signing key."""
    pem = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return pyseto.Key.new(version, "public", pem)


class VerifierTestCase(SynchronousTestCase):
    """Keys for both versions and purposes, a clock, and assertion helpers."""

    def setUp(self) -> None:
        """Create keys and a clock set to the issue time of the test tokens."""
        self.clock = Clock(NOW)
        self.signing = {version: new_signing_key(version) for version in (4, 2)}
        self.public = {v: public_key_from_signing_key(k) for v, k in self.signing.items()}
        self.local = {v: parse_local_key(bytes(range(v, v + 32)).hex(), v) for v in (4, 2)}

    def verifier(self, **settings: Any) -> TokenVerifier:
        """A verifier for v4 and v2, both purposes, 30 s leeway, overridable."""
        options: dict[str, Any] = {
            "versions": ("v4", "v2"),
            "local_keys": {f"v{v}": [k] for v, k in self.local.items()},
            "public_keys": {f"v{v}": [k] for v, k in self.public.items()},
            "leeway": 30.0,
            "issuer": None,
            "audience": None,
            "clock": self.clock,
        }
        options.update(settings)
        return TokenVerifier(**options)

    def assertRefused(self, verifier: TokenVerifier, token: str, code: str) -> TokenError:
        """Check that ``token`` is refused with ``code`` and that the reason hides the token."""
        error = self.assertRaises(TokenError, verifier.verify, token)
        self.assertEqual(error.code, code, f"reason: {error.reason}")
        self.assertEqual(str(error), error.reason)
        self.assertNotIn('"', error.reason)
        for segment in token.split(".")[2:]:
            for start in range(len(segment) - 11):
                self.assertNotIn(segment[start : start + 12], error.reason)
        return error
