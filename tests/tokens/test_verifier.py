"""Verifying bearer tokens: cryptography, keys per version and purpose, claims, the cache."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.errors import TokenError
from runnergw.tokens.local_keys import parse_local_key
from runnergw.tokens.signing_keys import public_key_from_signing_key
from runnergw.tokens.syntax import check_token_syntax
from runnergw.tokens.verifier import VerifiedToken, parse_rfc3339
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

__all__ = [
    "CacheTests",
    "ClaimTests",
    "CryptoTests",
    "Rfc3339Tests",
]


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


class ClaimTests(VerifierTestCase):
    """The gateway's own claim checks."""

    def verify_claims(self, claims: Any, **settings: Any) -> VerifiedToken:
        """Verify a freshly signed token carrying ``claims``."""
        return self.verifier(**settings).verify(encode_token(self.signing[4], claims))

    def refuse_claims(self, claims: Any, code: str, **settings: Any) -> TokenError:
        """Check that a freshly signed token carrying ``claims`` is refused with ``code``."""
        token = encode_token(self.signing[4], claims)
        return self.assertRefused(self.verifier(**settings), token, code)

    def test_expired(self) -> None:
        """A token is refused once the clock passes exp by more than the leeway."""
        self.clock.now = NOW + HOUR + 29
        self.assertEqual(self.verify_claims(token_claims()).subject, "alice")
        self.clock.now = NOW + HOUR + 31
        error = self.refuse_claims(token_claims(), "expired")
        self.assertEqual(error.reason, "token expired")

    def test_expired_without_leeway(self) -> None:
        """Without leeway a token is refused one second after exp."""
        self.clock.now = NOW + HOUR + 1
        self.refuse_claims(token_claims(), "expired", leeway=0.0)

    def test_not_yet_valid(self) -> None:
        """A token whose nbf is beyond the leeway is refused; within the leeway it is accepted."""
        claims = token_claims(nbf=iso(NOW + 60))
        self.refuse_claims(claims, "not_yet_valid")
        self.assertEqual(self.verify_claims(claims, leeway=90.0).subject, "alice")

    def test_issued_in_future(self) -> None:
        """A token issued beyond the leeway in the future is refused; within it, accepted."""
        claims = token_claims(iat=iso(NOW + 60), nbf=None)
        self.refuse_claims(claims, "issued_in_future")
        self.assertEqual(self.verify_claims(claims, leeway=90.0).subject, "alice")

    def test_missing_exp(self) -> None:
        """A token without exp is refused."""
        self.refuse_claims(token_claims(exp=None), "missing_exp")

    def test_exp_without_timezone(self) -> None:
        """exp must carry a timezone."""
        self.refuse_claims(token_claims(exp="2030-01-01T00:00:00"), "bad_claims")

    def test_bad_time_values(self) -> None:
        """Time claims must be RFC 3339 strings."""
        for claims in (
            token_claims(exp=NOW + HOUR),
            token_claims(exp="tomorrow"),
            token_claims(exp="2023-11-14 23:13:20+00:00"),
            token_claims(exp="2023-02-30T00:00:00Z"),
            token_claims(nbf="2023-11-14T22:13:20"),
            token_claims(iat=True),
        ):
            self.refuse_claims(claims, "bad_claims")

    def test_go_style_times(self) -> None:
        """Times written by Go (Z suffix, nanoseconds, other offsets) are understood."""
        claims = token_claims(
            iat="2023-11-14T22:13:20.123456789Z",
            nbf="2023-11-14T23:13:20+01:00",
            exp="2023-11-14T18:13:20-05:00",
        )
        verified = self.verify_claims(claims)
        self.assertEqual(verified.expires_at, NOW + HOUR)

    def test_array_payload(self) -> None:
        """A JSON array payload is refused."""
        self.refuse_claims([token_claims()], "bad_claims")

    def test_non_json_payloads(self) -> None:
        """Payloads that are not one clean JSON object are refused."""
        exp = iso(NOW + HOUR)
        for payload in (
            b"not json",
            b"\xff\xfe",
            f'{{"exp":"{exp}","exp":"{exp}"}}'.encode(),
            f'{{"exp":"{exp}","n":NaN}}'.encode(),
        ):
            self.refuse_claims(payload, "bad_claims")

    def test_issuer(self) -> None:
        """When an issuer is configured, iss must equal it."""
        self.assertEqual(self.verify_claims(token_claims(iss="gw"), issuer="gw").subject, "alice")
        error = self.refuse_claims(token_claims(iss="evil-issuer"), "wrong_issuer", issuer="gw")
        self.assertNotIn("evil-issuer", error.reason)
        self.refuse_claims(token_claims(), "wrong_issuer", issuer="gw")

    def test_audience(self) -> None:
        """When an audience is configured, aud must name it (as a string or in a list)."""
        for aud in ("ollama", ["other", "ollama"]):
            verified = self.verify_claims(token_claims(aud=aud), audience="ollama")
            self.assertEqual(verified.claims["aud"], aud)
        for aud in ("other", ["other"], None, 7, {"ollama": True}):
            self.refuse_claims(token_claims(aud=aud), "wrong_audience", audience="ollama")

    def test_unchecked_issuer_and_audience(self) -> None:
        """Without configuration, any iss and aud are accepted."""
        verified = self.verify_claims(token_claims(iss="anyone", aud=["x"]))
        self.assertEqual(verified.claims["iss"], "anyone")

    def test_subject_and_role_types(self) -> None:
        """sub and role must be strings when present, and are optional."""
        self.refuse_claims(token_claims(sub=42), "bad_claims")
        self.refuse_claims(token_claims(role=["admin"]), "bad_claims")
        verified = self.verify_claims(token_claims(sub=None, role=None))
        self.assertEqual((verified.subject, verified.role), (None, None))

    def test_reasons_hide_claim_values(self) -> None:
        """Refusal reasons never repeat a claim value from the token."""
        marker = "marker-7f3a9c"
        for claims, code in (
            ([marker], "bad_claims"),
            (token_claims(iss="gw", aud="api", exp=marker), "bad_claims"),
            (token_claims(iss="gw", aud="api", nbf=f"2023-11-14T22:13:20{marker}"), "bad_claims"),
            (token_claims(iss="gw", aud="api", sub=[marker]), "bad_claims"),
            (token_claims(iss="gw", aud="api", role={marker: 1}), "bad_claims"),
            (token_claims(iss=marker, aud="api"), "wrong_issuer"),
            (token_claims(iss="gw", aud=[marker]), "wrong_audience"),
            ({"sub": marker}, "missing_exp"),
        ):
            error = self.refuse_claims(claims, code, issuer="gw", audience="api")
            self.assertNotIn(marker, error.reason)

    def test_max_lifetime(self) -> None:
        """Tokens living longer than the configured maximum are refused."""
        self.assertEqual(self.verify_claims(token_claims(), max_lifetime=HOUR).subject, "alice")
        error = self.refuse_claims(token_claims(), "bad_claims", max_lifetime=HOUR - 1)
        self.assertIn("lifetime", error.reason)

    def test_max_lifetime_without_iat(self) -> None:
        """Without iat, the lifetime is counted from now."""
        claims = token_claims(iat=None, exp=iso(NOW + 2 * HOUR))
        self.refuse_claims(claims, "bad_claims", max_lifetime=HOUR)
        self.clock.now = NOW + HOUR + 1
        self.assertEqual(self.verify_claims(claims, max_lifetime=HOUR).subject, "alice")


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


class Rfc3339Tests(SynchronousTestCase):
    """The date-time parser used for time claims."""

    def test_offsets(self) -> None:
        """Offsets and Z are honoured; t and z may be lower case."""
        self.assertEqual(parse_rfc3339("2022-01-01T00:00:00Z"), 1640995200.0)
        self.assertEqual(parse_rfc3339("2022-01-01t02:00:00+02:00"), 1640995200.0)
        self.assertEqual(parse_rfc3339("2021-12-31T19:00:00.5-05:00"), 1640995200.5)

    def test_refused(self) -> None:
        """Dates without a timezone, or not in RFC 3339 form, are refused."""
        for text in (
            "2022-01-01T00:00:00",
            "2022-01-01",
            "20220101T000000Z",
            "2022-01-01T00:00Z",
            "2022-01-01T00:00:00+0000",
            "2022-13-01T00:00:00Z",
            " 2022-01-01T00:00:00Z",
        ):
            self.assertRaises(ValueError, parse_rfc3339, text)
