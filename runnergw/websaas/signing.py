"""Sign the token that comes with every WebSaaS pipeline reply.

The reply's ``token`` is an RS256 JWT signed by the node's private key. The SaaS checks it
with the node's public key: ``iss`` is the server id agreed with the SaaS, ``exp`` is
``iat`` plus five minutes. Besides the old node's claims, the token names the subject and the
endpoint it answers, carries a random ``jti``, and binds the reply's outputs by their
SHA-256 digests, so that the token cannot be moved onto other outputs.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from runnergw.websaas.keys import MINIMUM_RSA_BITS

__all__ = ["ResponseSigner", "output_digest", "verify_response_token"]

_ALGORITHM = "RS256"
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_REQUIRED_CLAIMS = ["iss", "iat", "exp", "jti", "endpoint", "outputs"]


def output_digest(data: bytes) -> str:
    """The digest of one output, in the form the reply token carries.

    Args:
        data: The output file's bytes.

    Returns:
        ``sha256:`` followed by 64 lowercase hexadecimal characters.
    """
    return "sha256:" + hashlib.sha256(data).hexdigest()


class ResponseSigner:
    """Mint reply tokens with the node's private key, loaded once."""

    def __init__(
        self,
        private_key: RSAPrivateKey,
        server_id: str,
        *,
        lifetime: float = 300,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Configure the signer.

        Args:
            private_key: The node's RSA private key.
            server_id: The id agreed with the SaaS, written as ``iss``.
            lifetime: Seconds from ``iat`` to ``exp``; whole seconds, at least one.
            clock: Returns the current wall-clock time as POSIX seconds.

        Raises:
            TypeError: ``private_key`` is not an RSA private key.
            ValueError: The key is shorter than 2048 bits, the server id is empty, or the
                lifetime is below one second.
        """
        if not isinstance(private_key, RSAPrivateKey):
            raise TypeError("the node key must be an RSA private key")
        if private_key.key_size < MINIMUM_RSA_BITS:
            raise ValueError(f"the node key needs at least {MINIMUM_RSA_BITS} bits")
        if not server_id:
            raise ValueError("the server id must not be empty")
        if lifetime < 1:
            raise ValueError("the reply token lifetime must be at least one second")
        self._private_key = private_key
        self._server_id = server_id
        self._lifetime = int(lifetime)
        self._clock = clock

    def sign(
        self, *, subject: str | None, endpoint: str, output_hashes: Mapping[str, str | None]
    ) -> str:
        """Mint the token for one reply.

        Args:
            subject: The user the reply is for (the user token's ``sub``); left out of the
                token when None.
            endpoint: The route that answered, e.g. ``process-audio``.
            output_hashes: Output id to its digest as made by :func:`output_digest`
                (``sha256:<hex>``), or None for an output that has no content.

        Returns:
            The compact JWT.

        Raises:
            ValueError: A digest is not ``sha256:`` followed by 64 lowercase hex digits.
        """
        outputs: dict[str, str | None] = {}
        for output_id, digest in output_hashes.items():
            if digest is not None and _DIGEST.fullmatch(digest) is None:
                raise ValueError(f"output {output_id!r}: digest must be sha256:<64 hex digits>")
            outputs[output_id] = digest
        issued = int(self._clock())
        claims: dict[str, Any] = {
            "iss": self._server_id,
            "iat": issued,
            "exp": issued + self._lifetime,
            "endpoint": endpoint,
            "jti": secrets.token_hex(16),
            "outputs": outputs,
        }
        if subject is not None:
            claims["sub"] = subject
        return jwt.encode(claims, self._private_key, algorithm=_ALGORITHM)


def verify_response_token(
    token: str,
    public_key: RSAPublicKey,
    *,
    issuer: str | None = None,
    now: float | None = None,
    leeway: float = 0,
) -> dict[str, Any]:
    """Verify a reply token as the SaaS does.

    Args:
        token: The compact JWT from the reply.
        public_key: The node's RSA public key.
        issuer: The server id to require as ``iss``, or None not to check it.
        now: The time to check ``exp`` and ``iat`` against; None for the current time.
        leeway: Allowed clock skew, in seconds.

    Returns:
        The token's claims.

    Raises:
        jwt.InvalidTokenError: The token is malformed, not RS256, badly signed, misses a
            claim, has another issuer, has expired or was issued in the future.
    """
    claims = jwt.decode(
        token,
        public_key,
        algorithms=[_ALGORITHM],
        issuer=issuer,
        options={
            "require": _REQUIRED_CLAIMS,
            "verify_exp": False,
            "verify_iat": False,
            "verify_nbf": False,
            "verify_aud": False,
            "verify_iss": issuer is not None,
        },
    )
    moment = time.time() if now is None else now
    if moment >= claims["exp"] + leeway:
        raise jwt.ExpiredSignatureError("reply token expired")
    if claims["iat"] > moment + leeway:
        raise jwt.ImmatureSignatureError("reply token issued in the future")
    return claims
