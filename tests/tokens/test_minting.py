"""Minting tokens that the gateway (and the Go tool) accept."""

from __future__ import annotations

import base64
import json

from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import TokenError
from runnergw.tokens.key_generation import generate_local_key_hex, generate_signing_keypair
from runnergw.tokens.local_keys import parse_local_key
from runnergw.tokens.minting import format_rfc3339, mint_token
from runnergw.tokens.public_keys import load_public_keys
from runnergw.tokens.signing_keys import load_signing_key
from runnergw.tokens.verifier import TokenVerifier

__all__ = ["MintingTests"]

_NOW = 1_700_000_000.75
_ISSUED = "2023-11-14T22:13:20+00:00"


class _Clock:
    """A settable wall clock."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class MintingTests(SynchronousTestCase):
    """mint_token."""

    def setUp(self) -> None:
        """Create a key pair and a symmetric key for v4 and v2."""
        private_file, public_file = generate_signing_keypair()
        local_hex = generate_local_key_hex()
        self.clock = _Clock(_NOW)
        self.signing = {v: load_signing_key(private_file, v) for v in (4, 2)}
        self.public = {f"v{v}": load_public_keys(public_file, v) for v in (4, 2)}
        self.local = {v: parse_local_key(local_hex, v) for v in (4, 2)}

    def verifier(self, **settings: object) -> TokenVerifier:
        """A verifier with the test keys, for v4 and v2."""
        options: dict[str, object] = {
            "versions": ("v4", "v2"),
            "local_keys": {f"v{v}": [k] for v, k in self.local.items()},
            "public_keys": self.public,
            "leeway": 0.0,
            "issuer": None,
            "audience": None,
            "clock": self.clock,
        }
        options.update(settings)
        return TokenVerifier(**options)  # type: ignore[arg-type]

    def test_public_token_claims(self) -> None:
        """A signed token verifies and carries RFC 3339 UTC times to the second."""
        token = mint_token(
            self.signing[4], subject="alice", role="admin", lifetime=3600, now=_NOW
        )
        self.assertTrue(token.startswith("v4.public."))
        self.assertEqual(len(token.split(".")), 3)
        verified = self.verifier().verify(token)
        self.assertEqual(
            dict(verified.claims),
            {
                "iat": _ISSUED,
                "nbf": _ISSUED,
                "exp": "2023-11-14T23:13:20+00:00",
                "sub": "alice",
                "role": "admin",
            },
        )
        self.assertEqual((verified.subject, verified.role), ("alice", "admin"))
        self.assertEqual(verified.expires_at, 1_700_003_600.0)

    def test_local_token(self) -> None:
        """A symmetric key mints a vN.local token that verifies."""
        for version in (4, 2):
            key = self.local[version]
            token = mint_token(key, subject="bob", role=None, lifetime=60, now=_NOW)
            self.assertTrue(token.startswith(f"v{version}.local."))
            verified = self.verifier().verify(token)
            self.assertEqual((verified.version, verified.purpose), (f"v{version}", "local"))
            self.assertEqual(verified.subject, "bob")
            self.assertNotIn("role", verified.claims)

    def test_v2_public_token(self) -> None:
        """A v2 signing key mints a v2.public token that verifies."""
        token = mint_token(self.signing[2], subject=None, role="user", lifetime=60, now=_NOW)
        self.assertTrue(token.startswith("v2.public."))
        verified = self.verifier().verify(token)
        self.assertEqual((verified.subject, verified.role), (None, "user"))

    def test_issuer_audience_and_extra(self) -> None:
        """Issuer, audience and extra claims are included and pass the verifier's checks."""
        token = mint_token(
            self.signing[4],
            subject="carol",
            role="user",
            lifetime=600,
            now=_NOW,
            issuer="runnergw",
            audience="ollama",
            extra={"jti": "abc123"},
        )
        verified = self.verifier(issuer="runnergw", audience="ollama").verify(token)
        self.assertEqual(verified.claims["iss"], "runnergw")
        self.assertEqual(verified.claims["aud"], "ollama")
        self.assertEqual(verified.claims["jti"], "abc123")

    def test_minted_token_expires(self) -> None:
        """A minted token is refused once its lifetime is over."""
        token = mint_token(self.local[4], subject="dave", role=None, lifetime=60, now=_NOW)
        self.clock.now = _NOW + 61
        error = self.assertRaises(TokenError, self.verifier().verify, token)
        self.assertEqual(error.code, "expired")

    def test_payload_is_compact_json(self) -> None:
        """The signed payload is compact JSON with no footer."""
        token = mint_token(self.signing[4], subject="eve", role=None, lifetime=60, now=_NOW)
        body = token.split(".")[2]
        message = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))[:-64]
        self.assertEqual(
            json.loads(message),
            {"iat": _ISSUED, "nbf": _ISSUED, "exp": "2023-11-14T22:14:20+00:00", "sub": "eve"},
        )
        self.assertNotIn(b" ", message)

    def test_public_key_cannot_mint(self) -> None:
        """A verification key cannot mint tokens."""
        public = self.public["v4"][0]
        self.assertRaises(
            ValueError, mint_token, public, subject="x", role=None, lifetime=60, now=_NOW
        )

    def test_bad_arguments(self) -> None:
        """A non-positive lifetime or an extra claim that clashes is refused."""
        key = self.signing[4]
        self.assertRaises(
            ValueError, mint_token, key, subject="x", role=None, lifetime=0, now=_NOW
        )
        self.assertRaises(
            ValueError,
            mint_token,
            key,
            subject="x",
            role=None,
            lifetime=60,
            now=_NOW,
            extra={"exp": "2099-01-01T00:00:00+00:00"},
        )

    def test_format_rfc3339(self) -> None:
        """Times are formatted in UTC with a +00:00 offset, to the second."""
        self.assertEqual(format_rfc3339(0.999), "1970-01-01T00:00:00+00:00")
        self.assertEqual(format_rfc3339(1_640_995_200), "2022-01-01T00:00:00+00:00")
