"""The official PASETO and PASERK test vectors, run through runnergw's token layer.

The vector files are third-party data kept outside the repository; these tests skip when
they are absent. Each test walks one vector family and reports every failing vector by name.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable
from typing import Any

import pyseto
from pyseto import KeyInterface
from twisted.trial.unittest import SynchronousTestCase

from runnergw.tokens.claims import parse_rfc3339
from runnergw.tokens.errors import KeyFileError, TokenError
from runnergw.tokens.local_keys import parse_local_key
from runnergw.tokens.public_keys import load_public_keys
from runnergw.tokens.signing_keys import load_signing_key, public_key_from_signing_key
from runnergw.tokens.syntax import check_token_syntax
from runnergw.tokens.verifier import TokenVerifier
from tests.helpers.reference import reference_file

__all__ = ["PaserkVectorTests", "TokenVectorTests"]

_DAY = 86400.0
_SYMMETRIC_KEY = "707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f"
_PUBLIC_KEY_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MCowBQYDK2VwAyEAHrnbu7wEfAP9cGBOAHHwmH4Wsot1ciXBHwBBXQ4gsaI=\n"
    "-----END PUBLIC KEY-----"
)
_EXPECTED_FAILURE_CODES = {
    "2-F-1": "invalid",
    "2-F-2": "invalid",
    "2-F-3": "unsupported_version",
    "4-F-1": "invalid",
    "4-F-2": "invalid",
    "4-F-3": "unsupported_version",
    "4-F-4": "malformed",
    "4-F-5": "malformed",
}


def _vectors(*parts: str) -> list[dict[str, Any]]:
    """Load the ``tests`` list of a vector file, or skip when the file is absent."""
    with reference_file("paseto-test-vectors", *parts).open(encoding="utf-8") as handle:
        tests: list[dict[str, Any]] = json.load(handle)["tests"]
    return tests


def _raw_key(key: KeyInterface) -> bytes:
    """The key material of a pyseto key, read back from its PASERK."""
    data = key.to_paserk().split(".")[2]
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


def _paserk_of(version: int, kind: str, raw: bytes) -> str:
    """Spell raw bytes as a plain PASERK."""
    return f"k{version}.{kind}." + base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _vector_key(vector: dict[str, Any], version: int) -> KeyInterface:
    """The key that verifies or decrypts a vector, loaded through runnergw's loaders."""
    if vector["token"].split(".")[1] == "local":
        return parse_local_key(vector["key"], version)
    return load_public_keys(vector["public-key-pem"].encode("ascii"), version)[0]


def _verifier_for(clock: Callable[[], float]) -> TokenVerifier:
    """A verifier accepting v4 and v2 with the vector files' shared local and public keys."""
    return TokenVerifier(
        versions=("v4", "v2"),
        local_keys={f"v{n}": [parse_local_key(_SYMMETRIC_KEY, n)] for n in (4, 2)},
        public_keys={f"v{n}": load_public_keys(_PUBLIC_KEY_PEM.encode(), n) for n in (4, 2)},
        leeway=0.0,
        issuer=None,
        audience=None,
        clock=clock,
    )


def _report(failures: Iterable[str]) -> str:
    """Render failing vectors for an assertion message."""
    return "failing vectors:\n  " + "\n  ".join(failures)


class TokenVectorTests(SynchronousTestCase):
    """The v2, v3 and v4 token vectors."""

    def _check_decodes(self, version: int) -> None:
        """Every valid vector passes the syntax check and decodes to its payload and footer."""
        failures: list[str] = []
        checked = 0
        for vector in _vectors(f"v{version}.json"):
            if vector["expect-fail"]:
                continue
            checked += 1
            name, token = vector["name"], vector["token"]
            expected_header = tuple(token.split(".")[:2])
            header = check_token_syntax(
                token, versions=("v4", "v2"), purposes=("local", "public"), max_bytes=8192
            )
            if header != expected_header:
                failures.append(f"{name}: syntax check gave {header}")
            key = _vector_key(vector, version)
            decoded = pyseto.decode(key, token, implicit_assertion=vector["implicit-assertion"])
            if decoded.payload != vector["payload"].encode("utf-8"):
                failures.append(f"{name}: payload differs")
            if decoded.footer != vector["footer"].encode("utf-8"):
                failures.append(f"{name}: footer differs")
        self.assertEqual(failures, [], _report(failures))
        self.assertEqual(checked, 12, "expected 12 valid vectors")

    def test_v4_vectors_decode(self) -> None:
        """Every valid v4 vector passes the syntax check and decodes to its exact payload."""
        self._check_decodes(4)

    def test_v2_vectors_decode(self) -> None:
        """Every valid v2 vector passes the syntax check and decodes to its exact payload."""
        self._check_decodes(2)

    def _check_verifies(self, version: int) -> None:
        """Valid vectors verify with the clock set one day before their expiry."""
        failures: list[str] = []
        for vector in _vectors(f"v{version}.json"):
            if vector["expect-fail"]:
                continue
            name, payload = vector["name"], json.loads(vector["payload"])
            moment = parse_rfc3339(payload["exp"]) - _DAY
            verifier = _verifier_for(lambda moment=moment: moment)
            # The gateway uses no implicit assertion, so v4 vectors that carry one cannot verify;
            # v2 has no implicit assertions and the vectors' value is ignored.
            needs_assertion = version == 4 and vector["implicit-assertion"] != ""
            try:
                verified = verifier.verify(vector["token"])
            except TokenError as error:
                if not (needs_assertion and error.code == "invalid"):
                    failures.append(f"{name}: refused with {error.code}")
                continue
            if needs_assertion:
                failures.append(f"{name}: accepted without its implicit assertion")
            elif dict(verified.claims) != payload:
                failures.append(f"{name}: claims differ")
            elif verified.expires_at != parse_rfc3339(payload["exp"]):
                failures.append(f"{name}: expiry differs")
        self.assertEqual(failures, [], _report(failures))

    def test_v4_vectors_verify(self) -> None:
        """Valid v4 vectors are accepted by the gateway while they have not expired."""
        self._check_verifies(4)

    def test_v2_vectors_verify(self) -> None:
        """Valid v2 vectors are accepted by the gateway while they have not expired."""
        self._check_verifies(2)

    def test_v4_vectors_expire(self) -> None:
        """Valid v4 vectors are refused as expired with the real clock (their exp is 2022)."""
        failures: list[str] = []
        for vector in _vectors("v4.json"):
            if vector["expect-fail"] or vector["implicit-assertion"]:
                continue
            try:
                _verifier_for(lambda: parse_rfc3339("2030-01-01T00:00:00Z")).verify(
                    vector["token"]
                )
            except TokenError as error:
                if error.code != "expired":
                    failures.append(f"{vector['name']}: refused with {error.code}")
            else:
                failures.append(f"{vector['name']}: accepted after its expiry")
        self.assertEqual(failures, [], _report(failures))

    def _check_refused(self, version: int) -> None:
        """Every expect-fail vector is refused, for the documented reason."""
        failures: list[str] = []
        checked = 0
        verifier = _verifier_for(lambda: parse_rfc3339("2018-12-31T00:00:00Z"))
        for vector in _vectors(f"v{version}.json"):
            if not vector["expect-fail"]:
                continue
            checked += 1
            name = vector["name"]
            try:
                verifier.verify(vector["token"])
            except TokenError as error:
                if error.code != _EXPECTED_FAILURE_CODES[name]:
                    failures.append(f"{name}: refused with {error.code}")
            else:
                failures.append(f"{name}: accepted")
        self.assertEqual(failures, [], _report(failures))
        self.assertEqual(checked, {2: 3, 4: 5}[version])

    def test_v4_failure_vectors_refused(self) -> None:
        """Every v4 vector that must fail is refused, padding and trailing bits included."""
        self._check_refused(4)

    def test_v2_failure_vectors_refused(self) -> None:
        """Every v2 vector that must fail is refused."""
        self._check_refused(2)

    def test_v3_vectors_refused(self) -> None:
        """Every v3 vector is refused as an unsupported version, with a clear reason."""
        failures: list[str] = []
        verifier = _verifier_for(lambda: parse_rfc3339("2021-12-31T00:00:00Z"))
        vectors = _vectors("v3.json")
        for vector in vectors:
            token = vector["token"]
            if not token.startswith("v3."):
                continue
            try:
                verifier.verify(token)
            except TokenError as error:
                expected = ("unsupported_version", "v3 tokens are not accepted")
                if (error.code, error.reason) != expected:
                    failures.append(f"{vector['name']}: refused with {error.code}: {error.reason}")
            else:
                failures.append(f"{vector['name']}: accepted")
        self.assertEqual(failures, [], _report(failures))
        self.assertEqual(len(vectors), 17)

    def test_go_private_key_from_vector(self) -> None:
        """The vectors' Ed25519 key in Go's raw PEM form and in PKCS#8 give the same key pair."""
        vector = next(v for v in _vectors("v4.json") if v["name"] == "4-S-1")
        raw = bytes.fromhex(vector["secret-key"])
        body = base64.b64encode(raw).decode("ascii")
        label = "ED25519 PRIVATE KEY"
        go_pem = f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n"
        from_go = load_signing_key(go_pem.encode("ascii"), 4)
        from_pkcs8 = load_signing_key(vector["secret-key-pem"].encode("ascii"), 4)
        self.assertEqual(_raw_key(from_go), raw)
        self.assertEqual(_raw_key(from_pkcs8), raw)
        public = public_key_from_signing_key(from_go)
        self.assertEqual(_raw_key(public), bytes.fromhex(vector["public-key"]))


class PaserkVectorTests(SynchronousTestCase):
    """The PASERK ``local``, ``public`` and ``secret`` vectors for k4 and k2."""

    def _check_family(
        self, version: int, kind: str, load: Callable[[str, int], KeyInterface]
    ) -> None:
        """Valid PASERKs load to the expected key; the others raise KeyFileError."""
        failures: list[str] = []
        for vector in _vectors("PASERK", f"k{version}.{kind}.json"):
            name, paserk, key = vector["name"], vector["paserk"], vector["key"]
            if paserk is None:
                is_pem = key.startswith("-----BEGIN")
                paserk = key if is_pem else _paserk_of(version, kind, bytes.fromhex(key))
            try:
                loaded = load(paserk, version)
            except KeyFileError as error:
                if not vector["expect-fail"]:
                    failures.append(f"{name}: refused: {error}")
                continue
            if vector["expect-fail"]:
                failures.append(f"{name}: accepted")
            elif _raw_key(loaded) != bytes.fromhex(key):
                failures.append(f"{name}: loaded the wrong key material")
            elif loaded.to_paserk() != paserk:
                failures.append(f"{name}: does not round-trip")
        self.assertEqual(failures, [], _report(failures))

    def test_k4_local(self) -> None:
        """k4.local PASERKs load as 32-byte keys; short and k3 ones are refused."""
        self._check_family(4, "local", parse_local_key)

    def test_k2_local(self) -> None:
        """k2.local PASERKs load as 32-byte keys; short and k1 ones are refused."""
        self._check_family(2, "local", parse_local_key)

    def test_k4_public(self) -> None:
        """k4.public PASERKs load as verification keys; a P-384 key is refused."""
        self._check_family(4, "public", lambda text, n: load_public_keys(text.encode(), n)[0])

    def test_k2_public(self) -> None:
        """k2.public PASERKs load as verification keys; an RSA key is refused."""
        self._check_family(2, "public", lambda text, n: load_public_keys(text.encode(), n)[0])

    def test_k4_secret(self) -> None:
        """k4.secret PASERKs load as signing keys; short and non-Ed25519 keys are refused."""
        self._check_family(4, "secret", lambda text, n: load_signing_key(text.encode(), n))

    def test_k2_secret(self) -> None:
        """k2.secret PASERKs load as signing keys; short and RSA keys are refused."""
        self._check_family(2, "secret", lambda text, n: load_signing_key(text.encode(), n))

    def test_secret_public_half(self) -> None:
        """The public key derived from each k4.secret vector is the one the vector lists."""
        failures: list[str] = []
        for vector in _vectors("PASERK", "k4.secret.json"):
            if vector["expect-fail"]:
                continue
            key = load_signing_key(vector["paserk"].encode("ascii"), 4)
            public = public_key_from_signing_key(key)
            if _raw_key(public) != bytes.fromhex(vector["public-key"]):
                failures.append(f"{vector['name']}: wrong public key")
        self.assertEqual(failures, [], _report(failures))
