"""Verifying bearer tokens: cryptography, keys per version and purpose, and the result cache."""

from __future__ import annotations

from runnergw.tokens.errors import TokenError
from runnergw.tokens.local_keys import parse_local_key
from runnergw.tokens.signing_keys import public_key_from_signing_key
from runnergw.tokens.syntax import check_token_syntax
from runnergw.tokens.verifier import VerifiedToken
from tests.helpers.paseto_keys import b64url
from tests.helpers.paseto_tokens import (
    HOUR,
    NOW,
    VerifierTestCase,
    encode_token,
    iso,
    new_signing_key,
    token_claims,
)

__all__ = ["CacheTests", "CryptoTests"]


class CryptoTests(VerifierTestCase):
    """Round trips, keys, versions and purposes."""

    def test_round_trips(self) -> None:
        """v4.public, v4.local, v2.public and v2.local tokens all verify with their keys."""
        verifier = self.verifier()
        for version in (4, 2):
            pairs = (("public", self.signing[version]), ("local", self.local[version]))
            for purpose, key in pairs:
                token = encode_token(key, token_claims())
                self.assertTrue(token.startswith(f"v{version}.{purpose}."))
                verified = verifier.verify(token)
                self.assertEqual(
                    verified,
                    VerifiedToken(
                        claims=token_claims(),
                        version=f"v{version}",
                        purpose=purpose,
                        expires_at=NOW + HOUR,
                        subject="alice",
                        role="user",
                    ),
                )

    def test_claims_are_read_only(self) -> None:
        """The verified claims cannot be changed by the caller."""
        verified = self.verifier().verify(encode_token(self.signing[4], token_claims()))
        with self.assertRaises(TypeError):
            verified.claims["role"] = "admin"  # type: ignore[index]

    def test_footer_allowed(self) -> None:
        """A token with a footer verifies; the footer is ignored."""
        token = encode_token(self.signing[4], token_claims(), footer=b'{"kid":"k4.pid.whatever"}')
        self.assertEqual(len(token.split(".")), 4)
        self.assertEqual(self.verifier().verify(token).subject, "alice")

    def test_wrong_key_invalid(self) -> None:
        """A token signed or encrypted with another key is refused as invalid."""
        verifier = self.verifier()
        self.assertRefused(verifier, encode_token(new_signing_key(4), token_claims()), "invalid")
        other_local = parse_local_key(bytes(32).hex(), 4)
        error = self.assertRefused(verifier, encode_token(other_local, token_claims()), "invalid")
        self.assertEqual(error.reason, "token signature or encryption is invalid")

    def test_tampered_token_invalid(self) -> None:
        """Changing one character of a signed token's body makes it invalid."""
        token = encode_token(self.signing[4], token_claims())
        position = len("v4.public.") + 5
        replacement = "B" if token[position] != "B" else "C"
        tampered = token[:position] + replacement + token[position + 1 :]
        self.assertRefused(self.verifier(), tampered, "invalid")

    def test_rotation(self) -> None:
        """With two public keys configured, tokens signed by either verify; others do not."""
        old, new, stranger = new_signing_key(4), new_signing_key(4), new_signing_key(4)
        verifier = self.verifier(
            public_keys={"v4": [public_key_from_signing_key(key) for key in (old, new)]}
        )
        self.assertEqual(verifier.verify(encode_token(old, token_claims(sub="old"))).subject, "old")
        self.assertEqual(verifier.verify(encode_token(new, token_claims(sub="new"))).subject, "new")
        self.assertRefused(verifier, encode_token(stranger, token_claims()), "invalid")

    def test_version_not_configured(self) -> None:
        """A v2 token is refused when only v4 is accepted, even if v2 keys are present."""
        verifier = self.verifier(versions=("v4",))
        token = encode_token(self.signing[2], token_claims())
        error = self.assertRefused(verifier, token, "unsupported_version")
        self.assertEqual(error.reason, "v2 tokens are not accepted")

    def test_purpose_not_configured(self) -> None:
        """A local token is refused when only public keys are configured."""
        verifier = self.verifier(local_keys={})
        token = encode_token(self.local[4], token_claims())
        error = self.assertRefused(verifier, token, "unsupported_purpose")
        self.assertEqual(error.reason, "v4.local tokens are not accepted")

    def test_purpose_per_version(self) -> None:
        """Purposes are accepted per version: v2.public is refused when only v4 has public keys."""
        verifier = self.verifier(public_keys={"v4": [self.public[4]]})
        self.assertRefused(
            verifier, encode_token(self.signing[2], token_claims()), "unsupported_purpose"
        )
        self.assertEqual(verifier.verify(encode_token(self.local[2], token_claims())).version, "v2")

    def test_v1_and_v3_refused(self) -> None:
        """v1 and v3 tokens are refused with a reason naming the version."""
        verifier = self.verifier()
        body = b64url(bytes(range(100)))
        for version in ("v1", "v3"):
            for purpose in ("local", "public"):
                error = self.assertRefused(
                    verifier, f"{version}.{purpose}.{body}", "unsupported_version"
                )
                self.assertEqual(error.reason, f"{version} tokens are not accepted")

    def test_v3_never_configurable(self) -> None:
        """v3 cannot be enabled, neither in the verifier nor in the syntax check."""
        self.assertRaises(ValueError, self.verifier, versions=("v4", "v3"))
        error = self.assertRaises(
            TokenError,
            check_token_syntax,
            f"v3.local.{b64url(bytes(100))}",
            versions=("v3", "v4"),
            purposes=("local",),
            max_bytes=8192,
        )
        self.assertEqual(error.code, "unsupported_version")

    def test_mismatched_key_refused_at_setup(self) -> None:
        """A v2 key listed as a v4 key is a configuration error."""
        self.assertRaises(ValueError, self.verifier, public_keys={"v4": [self.public[2]]})
        self.assertRaises(ValueError, self.verifier, local_keys={"v4": [self.public[4]]})

    def test_no_keys_refused_at_setup(self) -> None:
        """A verifier without any key for an accepted version cannot be built."""
        self.assertRaises(ValueError, self.verifier, local_keys={}, public_keys={})


class CacheTests(VerifierTestCase):
    """Remembering verified tokens."""

    def test_hit_returns_same_result(self) -> None:
        """Verifying the same token twice gives the same verified claims."""
        verifier = self.verifier()
        token = encode_token(self.signing[4], token_claims())
        first = verifier.verify(token)
        self.clock.now += 60
        second = verifier.verify(token)
        self.assertIs(second, first)
        self.assertEqual(second.claims["sub"], "alice")

    def test_cached_token_expires(self) -> None:
        """A cached token is refused as soon as the clock passes its expiry plus leeway."""
        verifier = self.verifier()
        token = encode_token(self.local[4], token_claims())
        verifier.verify(token)
        self.clock.now = NOW + HOUR + 30
        self.assertEqual(verifier.verify(token).subject, "alice")
        self.clock.now = NOW + HOUR + 30.5
        self.assertRefused(verifier, token, "expired")
        self.assertRefused(verifier, token, "expired")

    def test_failures_not_cached(self) -> None:
        """A token refused as not yet valid is accepted once its nbf arrives."""
        verifier = self.verifier()
        token = encode_token(self.signing[4], token_claims(nbf=iso(NOW + 120)))
        self.assertRefused(verifier, token, "not_yet_valid")
        self.clock.now = NOW + 100
        self.assertEqual(verifier.verify(token).subject, "alice")

    def test_cache_is_bounded(self) -> None:
        """The oldest entries are forgotten when the cache is full."""
        verifier = self.verifier(cache_size=2)
        tokens = [encode_token(self.signing[4], token_claims(sub=f"user{n}")) for n in range(3)]
        results = [verifier.verify(token) for token in tokens]
        self.assertIsNot(verifier.verify(tokens[0]), results[0])
        self.assertIs(verifier.verify(tokens[2]), results[2])

    def test_cache_disabled(self) -> None:
        """With a cache size of 0 every verification is done afresh."""
        verifier = self.verifier(cache_size=0)
        token = encode_token(self.signing[4], token_claims())
        self.assertIsNot(verifier.verify(token), verifier.verify(token))

    def test_variant_does_not_hit_cache(self) -> None:
        """A padded spelling of a cached token is still refused."""
        verifier = self.verifier()
        for size in range(4):
            token = encode_token(self.signing[4], token_claims(pad="x" * size))
            if len(token.split(".")[2]) % 4:
                break
        verifier.verify(token)
        self.assertRefused(verifier, token + "=" * (-len(token.split(".")[2]) % 4), "malformed")
