"""Claim checks (exp, nbf, iat, lifetime, iss, aud, sub, role) and the RFC 3339 times they use."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.claims import (
    check_issuer_and_audience,
    check_time_claims,
    optional_string_claim,
    parse_claims,
    parse_rfc3339,
)
from runnergw.tokens.errors import TokenError
from runnergw.tokens.verifier import VerifiedToken
from tests.helpers.paseto_tokens import (
    HOUR,
    NOW,
    VerifierTestCase,
    encode_token,
    iso,
    token_claims,
)

__all__ = ["ClaimCheckTests", "ClaimTests", "Rfc3339Tests"]


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


class ClaimCheckTests(SynchronousTestCase):
    """The claim checks on their own, without a token around them."""

    def test_time_rules_return_expiry(self) -> None:
        """Valid time claims give back exp as POSIX seconds."""
        expires = check_time_claims(
            token_claims(), clock=lambda: NOW, leeway=0.0, max_lifetime=None
        )
        self.assertEqual(expires, NOW + HOUR)

    def test_clock_read_after_claims(self) -> None:
        """A token without exp, or with a bad time, is refused before the clock is read."""
        readings: list[None] = []

        def clock() -> float:
            readings.append(None)
            return NOW

        for claims, code in (
            (token_claims(exp=None), "missing_exp"),
            (token_claims(iat="yesterday"), "bad_claims"),
        ):
            error = self.assertRaises(
                TokenError, check_time_claims, claims, clock=clock, leeway=0.0, max_lifetime=None
            )
            self.assertEqual(error.code, code)
        self.assertEqual(readings, [])
        check_time_claims(token_claims(), clock=clock, leeway=0.0, max_lifetime=None)
        self.assertEqual(len(readings), 1)

    def test_identity_unchecked_when_not_configured(self) -> None:
        """Without an issuer or audience configured, any iss and aud pass."""
        check_issuer_and_audience({"iss": 7, "aud": {"x": 1}}, issuer=None, audience=None)
        error = self.assertRaises(
            TokenError, check_issuer_and_audience, {"iss": "gw"}, issuer="gw", audience="api"
        )
        self.assertEqual(error.code, "wrong_audience")

    def test_payload_must_be_one_object(self) -> None:
        """The payload parses as a dict; nested duplicates and non-objects are refused."""
        claims = parse_claims(b'{"sub":"a","n":[1,{"x":2}]}')
        self.assertEqual(claims, {"sub": "a", "n": [1, {"x": 2}]})
        for payload in (b'{"a":{"b":1,"b":2}}', b'"text"', b"null", b"[]"):
            error = self.assertRaises(TokenError, parse_claims, payload)
            self.assertEqual(error.code, "bad_claims")

    def test_optional_strings(self) -> None:
        """A string claim is read, an absent or null one is None, any other type refused."""
        self.assertEqual(optional_string_claim({"sub": "alice"}, "sub"), "alice")
        self.assertIsNone(optional_string_claim({}, "sub"))
        self.assertIsNone(optional_string_claim({"sub": None}, "sub"))
        error = self.assertRaises(TokenError, optional_string_claim, {"role": 1}, "role")
        self.assertEqual(error.reason, "claim role must be a string")
