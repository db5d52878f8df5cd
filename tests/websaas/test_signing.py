"""Reply tokens: signed by the node key, with every claim the SaaS checks."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from twisted.trial.unittest import SynchronousTestCase

from runnergw.websaas.signing import ResponseSigner, output_digest, verify_response_token
from tests.websaas import NOW, b64url, other_key, saas_key

__all__ = ["OutputDigestTests", "SignerSettingsTests", "SignTests", "VerifyResponseTests"]

_SERVER_ID = "base64:c2VydmVyLWlkLWZvci10aGUtdGVzdHMhIQ=="


def _node_key() -> rsa.RSAPrivateKey:
    """The node key of these tests (the shared key, in another role)."""
    return saas_key()


def _signer(**options: Any) -> ResponseSigner:
    """A signer whose clock reads ``NOW`` plus a fraction."""
    settings: dict[str, Any] = {"clock": lambda: NOW + 0.75}
    settings.update(options)
    return ResponseSigner(_node_key(), _SERVER_ID, **settings)


def _header(token: str) -> dict[str, Any]:
    """The decoded JOSE header."""
    return jwt.get_unverified_header(token)


class OutputDigestTests(SynchronousTestCase):
    """``output_digest``."""

    def test_form(self) -> None:
        """``sha256:`` and the lowercase hex digest."""
        self.assertEqual(output_digest(b"abc"), "sha256:" + hashlib.sha256(b"abc").hexdigest())


class SignTests(SynchronousTestCase):
    """``ResponseSigner.sign``."""

    def setUp(self) -> None:
        """Hashes of two outputs, one of them empty."""
        self.outputs = {"audio": output_digest(b"RIFF...."), "preview": None}

    def test_claims(self) -> None:
        """iss, iat, exp = iat + 300, sub, endpoint, jti and outputs, verified with the key."""
        token = _signer().sign(subject="user-42", endpoint="process-audio",
                               output_hashes=self.outputs)
        claims = verify_response_token(token, _node_key().public_key(), issuer=_SERVER_ID,
                                       now=NOW)
        jti = claims.pop("jti")
        self.assertEqual(claims, {
            "iss": _SERVER_ID,
            "iat": int(NOW),
            "exp": int(NOW) + 300,
            "sub": "user-42",
            "endpoint": "process-audio",
            "outputs": self.outputs,
        })
        self.assertRegex(jti, r"^[0-9a-f]{32}$")
        self.assertIsInstance(claims["iat"], int)

    def test_header(self) -> None:
        """RS256, nothing the SaaS would have to interpret."""
        token = _signer().sign(subject="u", endpoint="e", output_hashes={})
        self.assertEqual(_header(token), {"alg": "RS256", "typ": "JWT"})

    def test_signature_is_rs256(self) -> None:
        """pyjwt verifies it with the node's public key and RS256 only."""
        token = _signer().sign(subject="u", endpoint="e", output_hashes={})
        claims = jwt.decode(token, _node_key().public_key(), algorithms=["RS256"],
                            options={"verify_exp": False, "verify_iat": False})
        self.assertEqual(claims["sub"], "u")

    def test_no_subject(self) -> None:
        """Without a subject, there is no sub claim (a null sub would fail verifiers)."""
        token = _signer().sign(subject=None, endpoint="e", output_hashes={})
        claims = verify_response_token(token, _node_key().public_key(), now=NOW)
        self.assertNotIn("sub", claims)
        self.assertEqual(claims["outputs"], {})

    def test_fresh_jti(self) -> None:
        """Each token has its own jti, so two replies never share a token."""
        signer = _signer()
        tokens = {signer.sign(subject="u", endpoint="e", output_hashes={}) for _ in range(5)}
        self.assertEqual(len(tokens), 5)

    def test_clock(self) -> None:
        """iat follows the injected clock, exp follows the lifetime."""
        now = [NOW]
        signer = _signer(clock=lambda: now[0], lifetime=60)
        now[0] += 1000
        token = signer.sign(subject="u", endpoint="e", output_hashes={})
        claims = verify_response_token(token, _node_key().public_key(), now=now[0])
        self.assertEqual((claims["iat"], claims["exp"]), (int(NOW) + 1000, int(NOW) + 1060))

    def test_bad_digests(self) -> None:
        """Digests must be ``sha256:`` and 64 lowercase hex digits."""
        signer = _signer()
        digest = hashlib.sha256(b"x").hexdigest()
        for bad in (digest, "sha256:" + digest.upper(), "md5:" + digest, "sha256:" + digest[:-1]):
            with self.subTest(digest=bad):
                self.assertRaises(ValueError, signer.sign, subject="u", endpoint="e",
                                  output_hashes={"out": bad})

    def test_outputs_copied(self) -> None:
        """The outputs claim is what was passed, in JSON."""
        token = _signer().sign(subject="u", endpoint="e", output_hashes=self.outputs)
        body = json.loads(jwt.utils.base64url_decode(token.split(".")[1]))
        self.assertEqual(body["outputs"], {"audio": self.outputs["audio"], "preview": None})


class VerifyResponseTests(SynchronousTestCase):
    """``verify_response_token`` refuses what the SaaS must refuse."""

    def setUp(self) -> None:
        """A valid token."""
        self.token = _signer().sign(subject="u", endpoint="e", output_hashes={})
        self.public = _node_key().public_key()

    def test_expired(self) -> None:
        """From exp on, the token is refused; just before, accepted."""
        verify_response_token(self.token, self.public, now=NOW + 299)
        self.assertRaises(jwt.ExpiredSignatureError, verify_response_token, self.token,
                          self.public, now=NOW + 300)

    def test_issued_in_future(self) -> None:
        """A token whose iat is after now."""
        self.assertRaises(jwt.ImmatureSignatureError, verify_response_token, self.token,
                          self.public, now=NOW - 10)

    def test_wrong_issuer(self) -> None:
        """Another server id."""
        self.assertRaises(jwt.InvalidIssuerError, verify_response_token, self.token,
                          self.public, issuer="base64:other", now=NOW)

    def test_wrong_key(self) -> None:
        """Another node's key."""
        self.assertRaises(jwt.InvalidSignatureError, verify_response_token, self.token,
                          other_key().public_key(), now=NOW)

    def test_tampered_outputs(self) -> None:
        """Changing the outputs breaks the signature."""
        head, body, signature = self.token.split(".")
        claims = json.loads(jwt.utils.base64url_decode(body))
        claims["outputs"] = {"audio": output_digest(b"other")}
        forged = f"{head}.{b64url(json.dumps(claims).encode())}.{signature}"
        self.assertRaises(jwt.InvalidSignatureError, verify_response_token, forged, self.public,
                          now=NOW)

    def test_missing_claims(self) -> None:
        """A token without the reply claims is not a reply token."""
        token = jwt.encode({"iss": _SERVER_ID, "exp": int(NOW) + 60}, _node_key(),
                           algorithm="RS256")
        self.assertRaises(jwt.MissingRequiredClaimError, verify_response_token, token,
                          self.public, now=NOW)

    def test_other_algorithm(self) -> None:
        """RS512 by the right key is refused."""
        token = jwt.encode({"iss": _SERVER_ID, "iat": int(NOW), "exp": int(NOW) + 60,
                            "jti": "x", "endpoint": "e", "outputs": {}}, _node_key(),
                           algorithm="RS512")
        self.assertRaises(jwt.InvalidAlgorithmError, verify_response_token, token, self.public,
                          now=NOW)


class SignerSettingsTests(SynchronousTestCase):
    """Impossible signer settings are refused."""

    def test_not_rsa(self) -> None:
        """An EC key or a public key."""
        self.assertRaises(TypeError, ResponseSigner, ec.generate_private_key(ec.SECP256R1()),
                          _SERVER_ID)
        self.assertRaises(TypeError, ResponseSigner, _node_key().public_key(), _SERVER_ID)

    def test_short_key(self) -> None:
        """A 1024-bit key."""
        small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
        self.assertRaises(ValueError, ResponseSigner, small, _SERVER_ID)

    def test_empty_server_id(self) -> None:
        """The server id is the issuer: it cannot be empty."""
        self.assertRaises(ValueError, ResponseSigner, _node_key(), "")

    def test_lifetime(self) -> None:
        """At least one second."""
        self.assertRaises(ValueError, ResponseSigner, _node_key(), _SERVER_ID, lifetime=0.5)
