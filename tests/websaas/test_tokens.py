"""Verifying the SaaS server and user JWTs: every refusal, success, and the cache."""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from twisted.trial.unittest import SynchronousTestCase

from runnergw.websaas.tokens import SaasCaller, SaasTokenError, SaasTokenVerifier
from tests.websaas import NOW, b64url, forge, mint, other_key, public_pem, saas_key

__all__ = [
    "AlgorithmTests",
    "AuthorizationHeaderTests",
    "CacheTests",
    "ClaimTests",
    "SettingsTests",
    "SuccessTests",
    "SyntaxTests",
    "TimeTests",
]


class _Clock:
    """A clock that tests move by hand."""

    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _server_claims(**changes: Any) -> dict[str, Any]:
    """Claims of a valid server token; ``None`` values remove a claim."""
    claims: dict[str, Any] = {"iss": "websaas", "iat": int(NOW), "exp": int(NOW) + 600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _user_claims(**changes: Any) -> dict[str, Any]:
    """Claims of a valid user token; ``None`` values remove a claim."""
    claims: dict[str, Any] = {"sub": "user-42", "role": "pro", "iss": "websaas",
                              "iat": int(NOW) - 60, "exp": int(NOW) + 3600}
    claims.update(changes)
    return {k: v for k, v in claims.items() if v is not None}


def _server_detail(reason: str) -> str:
    """The detail of a refused server token, worded as the FastAPI node did."""
    return f"Invalid server authentication: {reason}"


def _user_detail(reason: str) -> str:
    """The detail of a refused user token, worded as the FastAPI node did."""
    return f"Invalid user authentication: {reason}"


_SERVER_INVALID = _server_detail("Signature verification failed")
_USER_INVALID = _user_detail("Signature verification failed")


class _VerifierTestCase(SynchronousTestCase):
    """A verifier trusting the SaaS key, with a clock the tests control."""

    def setUp(self) -> None:
        """Build the verifier with no issuer or audience rule."""
        self.clock = _Clock()
        self.verifier = self.make_verifier()

    def make_verifier(self, **options: Any) -> SaasTokenVerifier:
        """A verifier with the test clock and the given options."""
        settings: dict[str, Any] = {"issuer": None, "audience": None, "clock": self.clock}
        settings.update(options)
        return SaasTokenVerifier(saas_key().public_key(), **settings)

    def verify(self, server: str | None = None, user: str | None = None,
               verifier: SaasTokenVerifier | None = None,
               authorization: str | None = None) -> SaasCaller:
        """Verify a server and a user token (valid ones by default)."""
        server = server if server is not None else mint(_server_claims())
        user = user if user is not None else mint(_user_claims())
        header = authorization if authorization is not None else f"Bearer {server}"
        return (verifier or self.verifier).verify(header, user)

    def refused(self, code: str, detail: str, *, server: str | None = None,
                user: str | None = None, verifier: SaasTokenVerifier | None = None,
                authorization: str | None = None) -> SaasTokenError:
        """Assert that verification fails with ``code`` and ``detail``, and 401."""
        error = self.assertRaises(SaasTokenError, self.verify, server, user, verifier,
                                  authorization)
        self.assertEqual((error.code, error.detail, error.status), (code, detail, 401))
        self.assertEqual(str(error), detail)
        for token in (server, user):
            if token and len(token.strip()) > 4:
                self.assertNotIn(token, repr(error.args))
                for part in token.split("."):
                    if len(part) > 4:
                        self.assertNotIn(part, detail)
        return error


class SuccessTests(_VerifierTestCase):
    """Valid tokens give the user's subject and role."""

    def test_subject_and_role(self) -> None:
        """The caller carries the user token's sub and role and both claim sets."""
        caller = self.verify()
        self.assertEqual((caller.subject, caller.role), ("user-42", "pro"))
        self.assertEqual(caller.user_claims["sub"], "user-42")
        self.assertEqual(caller.server_claims["iss"], "websaas")

    def test_claims_read_only(self) -> None:
        """The claim mappings cannot be changed by later filters."""
        caller = self.verify()
        with self.assertRaises(TypeError):
            caller.user_claims["role"] = "admin"  # type: ignore[index]

    def test_user_token_without_iat(self) -> None:
        """A user token without iat is accepted, as the old node did."""
        caller = self.verify(user=mint(_user_claims(iat=None)))
        self.assertEqual(caller.subject, "user-42")

    def test_bearer_scheme_case_and_spaces(self) -> None:
        """The scheme is case-insensitive and surrounding blanks are ignored."""
        token = mint(_server_claims())
        caller = self.verify(authorization=f"  bearer   {token}  ")
        self.assertEqual(caller.role, "pro")

    def test_issuer_and_audience(self) -> None:
        """Configured iss and aud rules pass for tokens that carry them."""
        verifier = self.make_verifier(issuer="websaas", audience="node-1")
        caller = self.verify(mint(_server_claims(aud="node-1")),
                             mint(_user_claims(aud=["other", "node-1"])), verifier)
        self.assertEqual(caller.subject, "user-42")

    def test_audience_ignored_when_not_configured(self) -> None:
        """Without an audience setting, an aud claim is not checked."""
        caller = self.verify(mint(_server_claims(aud="anyone")), mint(_user_claims(aud="x")))
        self.assertEqual(caller.subject, "user-42")

    def test_key_hints_ignored(self) -> None:
        """kid, jku, x5u and jwk headers do not stop a token signed by the SaaS key."""
        hints = {"kid": "rotated", "jku": "https://attacker.example/jwks.json",
                 "x5u": "https://attacker.example/cert.pem"}
        caller = self.verify(mint(_server_claims(), headers=hints))
        self.assertEqual(caller.subject, "user-42")


class AuthorizationHeaderTests(_VerifierTestCase):
    """The Authorization header must be ``Bearer <token>``."""

    def test_missing(self) -> None:
        """No header at all."""
        error = self.assertRaises(SaasTokenError, self.verifier.verify, None,
                                  mint(_user_claims()))
        self.assertEqual((error.code, error.detail), ("server_missing",
                                                      "Not authenticated"))

    def test_blank(self) -> None:
        """An empty header counts as missing."""
        self.refused("server_missing", "Not authenticated", authorization="  ")

    def test_other_scheme(self) -> None:
        """Basic credentials are refused with FastAPI's wording."""
        self.refused("server_malformed", "Invalid authentication credentials",
                     authorization="Basic dXNlcjpwYXNz")

    def test_scheme_without_token(self) -> None:
        """``Bearer`` alone is refused."""
        self.refused("server_malformed", "Invalid authentication credentials",
                     authorization="Bearer")

    def test_missing_user_token(self) -> None:
        """A valid server token without X-User-Token."""
        error = self.assertRaises(SaasTokenError, self.verifier.verify,
                                  f"Bearer {mint(_server_claims())}", None)
        self.assertEqual((error.code, error.detail), ("user_missing", "User token missing"))

    def test_blank_user_token(self) -> None:
        """An empty X-User-Token counts as missing."""
        self.refused("user_missing", "User token missing", user=" ")

    def test_server_checked_first(self) -> None:
        """With both tokens bad, the server token's error is reported."""
        self.refused("server_malformed", _SERVER_INVALID, server="xy.zw.ab",
                     user="xy.zw.ab")


class SyntaxTests(_VerifierTestCase):
    """Garbage and oversized tokens are refused before pyjwt parses them."""

    def setUp(self) -> None:
        """Verify a valid server token once, so that it is cached."""
        super().setUp()
        self.valid_server = mint(_server_claims())
        self.valid_user = mint(_user_claims())
        self.verify(self.valid_server, self.valid_user)

    def no_decode(self) -> None:
        """Fail if pyjwt is asked to decode anything."""
        def refuse(*args: Any, **kwargs: Any) -> Any:
            raise AssertionError("pyjwt must not be called")
        self.patch(jwt, "decode", refuse)

    def test_garbage(self) -> None:
        """Text that is not a compact JWS."""
        self.no_decode()
        for garbage in ("not-a-jwt", "a.b", "a.b.c.d", "a..c", "é.b.c", "a.b.c d"):
            with self.subTest(token=garbage):
                self.refused("server_malformed", _SERVER_INVALID, server=garbage)
                self.refused("user_malformed", _USER_INVALID,
                             server=self.valid_server, user=garbage)

    def test_padding_refused(self) -> None:
        """Padded or otherwise non-canonical base64url is refused, so a token has one form."""
        self.no_decode()
        head, body, signature = self.valid_server.split(".")
        self.refused("server_malformed", _SERVER_INVALID,
                     server=f"{head}.{body}.{signature}=")

    def test_non_canonical_trailing_bits(self) -> None:
        """A signature whose last character has non-zero unused bits is refused."""
        head, body, signature = self.valid_server.split(".")
        last = signature[-1]
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
        twisted_char = alphabet[alphabet.index(last) ^ 1]
        self.no_decode()
        self.refused("server_malformed", _SERVER_INVALID,
                     server=f"{head}.{body}.{signature[:-1]}{twisted_char}")

    def test_too_large(self) -> None:
        """Tokens over 8 KiB are refused before any parsing."""
        big_server = mint(_server_claims(padding="x" * 9000))
        big_user = mint(_user_claims(padding="x" * 9000))
        self.no_decode()
        self.refused("server_too_large", _SERVER_INVALID, server=big_server)
        self.refused("user_too_large", _USER_INVALID, server=self.valid_server,
                     user=big_user)

    def test_limit_configurable(self) -> None:
        """A smaller limit applies to both tokens."""
        verifier = self.make_verifier(max_token_bytes=len(self.valid_server) - 1)
        self.refused("server_too_large", _SERVER_INVALID, verifier=verifier)

    def test_payload_not_json(self) -> None:
        """A correctly signed payload that is not a JSON object."""
        head = b64url(json.dumps({"alg": "RS256", "typ": "JWT"}).encode())
        for payload in (b"[1, 2]", b"not json"):
            signing_input = f"{head}.{b64url(payload)}".encode()
            signature = saas_key().sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
            token = f"{signing_input.decode()}.{b64url(signature)}"
            with self.subTest(payload=payload):
                self.refused("server_invalid", _SERVER_INVALID, server=token)


class AlgorithmTests(_VerifierTestCase):
    """Only RS256 with the SaaS key is accepted."""

    def test_wrong_key(self) -> None:
        """A token signed by another RSA key."""
        self.refused("server_invalid", _SERVER_INVALID,
                     server=mint(_server_claims(), key=other_key()))
        self.refused("user_invalid", _USER_INVALID,
                     user=mint(_user_claims(), key=other_key()))

    def test_none_algorithm(self) -> None:
        """``alg: none``, with an empty or a bogus signature."""
        header = {"alg": "none", "typ": "JWT"}
        unsigned = forge(header, _server_claims(), b"")
        self.refused("server_malformed", _SERVER_INVALID, server=unsigned)
        self.refused("server_invalid", _SERVER_INVALID,
                     server=forge(header, _server_claims(), b"x" * 32))
        self.refused("user_invalid", _USER_INVALID,
                     user=forge(header, _user_claims(), b"x" * 32))

    def test_hs256_key_confusion(self) -> None:
        """HS256 signed with the public key PEM as the HMAC secret."""
        header = {"alg": "HS256", "typ": "JWT"}
        for claims, code, detail in ((_server_claims(), "server_invalid", _SERVER_INVALID),
                                     (_user_claims(), "user_invalid", _USER_INVALID)):
            unsigned = forge(header, claims, b"")[:-1]
            signature = hmac.new(public_pem(saas_key()), unsigned.encode(),
                                 hashlib.sha256).digest()
            token = f"{unsigned}.{b64url(signature)}"
            if code.startswith("server"):
                self.refused(code, detail, server=token)
            else:
                self.refused(code, detail, user=token)

    def test_other_rsa_algorithms(self) -> None:
        """RS512 and PS256 signatures by the right key are still refused."""
        for algorithm in ("RS512", "PS256"):
            with self.subTest(algorithm=algorithm):
                self.refused("server_invalid", _SERVER_INVALID,
                             server=mint(_server_claims(), algorithm=algorithm))

    def test_ec_token(self) -> None:
        """An ES256 token signed by some EC key."""
        ec_key = generate_private_key(SECP256R1())
        token = jwt.encode(_user_claims(), ec_key, algorithm="ES256")
        self.refused("user_invalid", _USER_INVALID, user=token)

    def test_embedded_jwk_does_not_change_the_key(self) -> None:
        """A token carrying its own key (jwk, jku, kid) and signed with it is refused."""
        public_jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(other_key().public_key()))
        hints = {"jwk": public_jwk, "kid": "attacker", "jku": "https://attacker.example/k",
                 "x5u": "https://attacker.example/c"}
        self.refused("server_invalid", _SERVER_INVALID,
                     server=mint(_server_claims(), key=other_key(), headers=hints))
        self.refused("user_invalid", _USER_INVALID,
                     user=mint(_user_claims(), key=other_key(), headers=hints))

    def test_tampered_claims(self) -> None:
        """Changing the role after signing breaks the signature."""
        head, _, signature = mint(_user_claims()).split(".")
        body = b64url(json.dumps(_user_claims(role="admin")).encode())
        self.refused("user_invalid", _USER_INVALID, user=f"{head}.{body}.{signature}")


class ClaimTests(_VerifierTestCase):
    """Required and checked claims."""

    def test_missing_exp(self) -> None:
        """exp is required on both tokens."""
        self.refused("server_missing_exp", _server_detail("Server token has no expiry"),
                     server=mint(_server_claims(exp=None)))
        self.refused("user_missing_exp", _user_detail("User token has no expiry"),
                     user=mint(_user_claims(exp=None)))

    def test_exp_not_a_number(self) -> None:
        """exp must be a JSON number: strings and booleans are refused."""
        for value in ("1800000000", True):
            with self.subTest(exp=value):
                self.refused("server_bad_claims", _SERVER_INVALID,
                             server=mint(_server_claims(exp=value)))

    def test_iat_and_nbf_not_numbers(self) -> None:
        """iat and nbf, when present, must be numbers too."""
        self.refused("user_bad_claims", _USER_INVALID,
                     user=mint(_user_claims(iat="yesterday")))
        self.refused("server_bad_claims", _SERVER_INVALID,
                     server=mint(_server_claims(nbf=[1])))

    def test_user_without_sub_or_role(self) -> None:
        """The user token must name a subject and a role, as non-empty strings."""
        cases = [("sub", None), ("role", None), ("sub", 42), ("role", ["pro"]), ("sub", ""),
                 ("role", "")]
        for name, value in cases:
            with self.subTest(claim=name, value=value):
                self.refused("user_bad_claims", _user_detail(f"User token has no {name}"),
                             user=mint(_user_claims(**{name: value})))

    def test_server_token_needs_no_sub(self) -> None:
        """The server token may carry no subject and no role."""
        caller = self.verify(server=mint({"exp": int(NOW) + 60}))
        self.assertEqual(caller.server_claims, {"exp": int(NOW) + 60})

    def test_wrong_issuer(self) -> None:
        """iss must match when an issuer is configured, on both tokens."""
        verifier = self.make_verifier(issuer="websaas")
        self.refused("server_wrong_issuer", _server_detail("Server token has the wrong issuer"),
                     server=mint(_server_claims(iss="elsewhere")), verifier=verifier)
        self.refused("user_wrong_issuer", _user_detail("User token has the wrong issuer"),
                     user=mint(_user_claims(iss="elsewhere")), verifier=verifier)

    def test_missing_issuer(self) -> None:
        """A token without iss is refused when an issuer is configured."""
        verifier = self.make_verifier(issuer="websaas")
        self.refused("server_wrong_issuer", _server_detail("Server token has the wrong issuer"),
                     server=mint(_server_claims(iss=None)), verifier=verifier)

    def test_wrong_audience(self) -> None:
        """aud must name the configured audience, on both tokens."""
        verifier = self.make_verifier(audience="node-1")
        self.refused("server_wrong_audience", _server_detail("Server token has the wrong audience"),
                     server=mint(_server_claims(aud="node-2")), verifier=verifier)
        self.refused("user_wrong_audience", _user_detail("User token has the wrong audience"),
                     server=mint(_server_claims(aud="node-1")),
                     user=mint(_user_claims(aud=["node-2"])), verifier=verifier)

    def test_missing_audience(self) -> None:
        """A token without aud is refused when an audience is configured."""
        verifier = self.make_verifier(audience="node-1")
        self.refused("server_wrong_audience", _server_detail("Server token has the wrong audience"),
                     server=mint(_server_claims()), verifier=verifier)


class TimeTests(_VerifierTestCase):
    """exp, nbf, iat and the user token's age, all against the injected clock."""

    def test_server_expired(self) -> None:
        """A server token past exp plus leeway."""
        self.refused("server_expired", _server_detail("Signature has expired"),
                     server=mint(_server_claims(exp=int(NOW) - 30)))

    def test_user_expired(self) -> None:
        """A user token past exp plus leeway."""
        self.refused("user_expired", _user_detail("Signature has expired"),
                     user=mint(_user_claims(exp=int(NOW) - 31)))

    def test_leeway(self) -> None:
        """Within the leeway, a just-expired token still passes."""
        caller = self.verify(mint(_server_claims(exp=int(NOW) - 29)),
                             mint(_user_claims(exp=int(NOW) - 29)))
        self.assertEqual(caller.subject, "user-42")

    def test_no_leeway(self) -> None:
        """With leeway 0, a token is refused from its exp second on."""
        verifier = self.make_verifier(leeway=0)
        self.refused("server_expired", _server_detail("Signature has expired"),
                     server=mint(_server_claims(exp=int(NOW))), verifier=verifier)

    def test_clock_moves(self) -> None:
        """The injected clock, not the real one, decides: a token valid now expires later."""
        server, user = mint(_server_claims()), mint(_user_claims(iat=None))
        self.verify(server, user, verifier=self.make_verifier(cache_size=0))
        self.clock.now += 10_000
        self.refused("server_expired", _server_detail("Signature has expired"), server=server,
                     user=user, verifier=self.make_verifier(cache_size=0))

    def test_not_yet_valid(self) -> None:
        """nbf beyond the leeway."""
        self.refused("server_not_yet_valid", _server_detail("The token is not yet valid (nbf)"),
                     server=mint(_server_claims(nbf=int(NOW) + 31)))
        self.refused("user_not_yet_valid", _user_detail("The token is not yet valid (nbf)"),
                     user=mint(_user_claims(nbf=int(NOW) + 31)))
        self.verify(mint(_server_claims(nbf=int(NOW) + 29)))

    def test_issued_in_future(self) -> None:
        """iat beyond the leeway, on either token."""
        self.refused("server_issued_in_future", _server_detail("The token is not yet valid (iat)"),
                     server=mint(_server_claims(iat=int(NOW) + 31)))
        self.refused("user_issued_in_future", _user_detail("The token is not yet valid (iat)"),
                     user=mint(_user_claims(iat=int(NOW) + 31)))
        self.verify(user=mint(_user_claims(iat=int(NOW) + 29)))

    def test_user_token_too_old(self) -> None:
        """A user token issued more than an hour ago, though not expired."""
        self.refused("user_too_old", "Token issued too long ago",
                     user=mint(_user_claims(iat=int(NOW) - 3601, exp=int(NOW) + 86400)))

    def test_user_token_age_limit_inclusive(self) -> None:
        """A user token exactly max_user_token_age old still passes."""
        self.verify(user=mint(_user_claims(iat=int(NOW) - 3600)))

    def test_max_age_configurable(self) -> None:
        """The age limit is a setting."""
        verifier = self.make_verifier(max_user_token_age=60)
        self.refused("user_too_old", "Token issued too long ago",
                     user=mint(_user_claims(iat=int(NOW) - 61)), verifier=verifier)

    def test_server_token_age_not_limited(self) -> None:
        """The age limit applies to the user token only."""
        caller = self.verify(server=mint(_server_claims(iat=int(NOW) - 86400)))
        self.assertEqual(caller.subject, "user-42")


class CacheTests(_VerifierTestCase):
    """Verified tokens are remembered until they expire; time rules are re-checked."""

    def setUp(self) -> None:
        """Count calls to pyjwt."""
        super().setUp()
        self.decodes = 0
        real_decode = jwt.decode

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.decodes += 1
            return real_decode(*args, **kwargs)

        self.patch(jwt, "decode", counting)

    def test_hit(self) -> None:
        """A second request with the same tokens needs no signature check."""
        server, user = mint(_server_claims()), mint(_user_claims())
        first = self.verify(server, user)
        self.assertEqual(self.decodes, 2)
        second = self.verify(server, user)
        self.assertEqual(self.decodes, 2)
        self.assertEqual(second, first)

    def test_server_token_reused_with_other_users(self) -> None:
        """One server token serves many user tokens; each user token is verified once."""
        server = mint(_server_claims())
        for n in range(3):
            caller = self.verify(server, mint(_user_claims(sub=f"user-{n}")))
            self.assertEqual(caller.subject, f"user-{n}")
        self.assertEqual(self.decodes, 4)

    def test_expiry_rechecked(self) -> None:
        """A cached token expires with the clock and is then forgotten."""
        server, user = mint(_server_claims(exp=int(NOW) + 10)), mint(_user_claims(iat=None))
        self.verify(server, user)
        self.clock.now += 100
        self.refused("server_expired", _server_detail("Signature has expired"), server=server,
                     user=user)
        self.clock.now = NOW
        self.verify(server, user)
        self.assertEqual(self.decodes, 3)

    def test_age_rechecked(self) -> None:
        """A cached user token becomes too old as the clock moves."""
        server = mint(_server_claims(exp=int(NOW) + 86400))
        user = mint(_user_claims(exp=int(NOW) + 86400))
        self.verify(server, user)
        self.clock.now += 3600
        self.refused("user_too_old", "Token issued too long ago", server=server, user=user)

    def test_failures_not_cached(self) -> None:
        """A token refused for its nbf is verified again, and accepted once valid."""
        user = mint(_user_claims(nbf=int(NOW) + 100))
        self.refused("user_not_yet_valid", _user_detail("The token is not yet valid (nbf)"),
                     user=user)
        self.clock.now += 100
        self.verify(user=user)
        self.assertEqual(self.decodes, 3)

    def test_kinds_kept_apart(self) -> None:
        """A server token accepted as such is still checked as a user token."""
        server = mint(_server_claims())
        self.refused("user_bad_claims", _user_detail("User token has no sub"), server=server,
                     user=server)

    def test_bounded(self) -> None:
        """The oldest entry is evicted when the cache is full."""
        verifier = self.make_verifier(cache_size=2)
        server, user_a, user_b = (mint(_server_claims()), mint(_user_claims(sub="a")),
                                  mint(_user_claims(sub="b")))
        self.verify(server, user_a, verifier)
        self.verify(server, user_b, verifier)
        self.assertEqual(self.decodes, 3)
        self.verify(server, user_b, verifier)
        self.assertEqual(self.decodes, 4)
        self.verify(server, user_b, verifier)
        self.assertEqual(self.decodes, 4)

    def test_disabled(self) -> None:
        """cache_size 0 verifies every time."""
        verifier = self.make_verifier(cache_size=0)
        server, user = mint(_server_claims()), mint(_user_claims())
        self.verify(server, user, verifier)
        self.verify(server, user, verifier)
        self.assertEqual(self.decodes, 4)


class SettingsTests(SynchronousTestCase):
    """Impossible verifier settings are refused."""

    def test_not_rsa(self) -> None:
        """The key must be an RSA public key."""
        ec_public = generate_private_key(SECP256R1()).public_key()
        self.assertRaises(TypeError, SaasTokenVerifier, ec_public, issuer=None, audience=None)
        self.assertRaises(TypeError, SaasTokenVerifier, public_pem(saas_key()), issuer=None,
                          audience=None)

    def test_out_of_range(self) -> None:
        """Negative leeway, non-positive ages and sizes, negative cache sizes."""
        public = saas_key().public_key()
        for options in ({"leeway": -1}, {"max_user_token_age": 0},
                        {"max_token_bytes": 0}, {"cache_size": -1}):
            with self.subTest(**options):
                self.assertRaises(ValueError, SaasTokenVerifier, public, issuer=None,
                                  audience=None, **options)
