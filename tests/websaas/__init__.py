"""Tests of the WebSaaS terminal's keys and tokens, with shared RSA keys and token makers.

Generating RSA keys is slow, so the whole suite shares two 2048-bit keys: the SaaS key that
verifiers trust, and a stranger's key that they must not.
"""

from __future__ import annotations

import base64
import functools
import json
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["NOW", "b64url", "forge", "mint", "other_key", "public_pem", "saas_key"]

NOW = 1_700_000_000.0
"""The clock reading of every verifier built in these tests."""


@functools.cache
def saas_key() -> rsa.RSAPrivateKey:
    """The SaaS private key (generated once)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@functools.cache
def other_key() -> rsa.RSAPrivateKey:
    """Somebody else's private key (generated once)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key's public half."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def mint(
    claims: dict[str, Any],
    *,
    key: rsa.RSAPrivateKey | None = None,
    algorithm: str = "RS256",
    headers: dict[str, Any] | None = None,
) -> str:
    """A JWT signed with pyjwt (by default RS256 with the SaaS key)."""
    return jwt.encode(claims, key or saas_key(), algorithm=algorithm, headers=headers)


def forge(header: dict[str, Any], claims: dict[str, Any], signature: bytes) -> str:
    """A JWT assembled by hand, for headers and signatures pyjwt would not produce."""
    head = b64url(json.dumps(header).encode())
    body = b64url(json.dumps(claims).encode())
    return f"{head}.{body}.{b64url(signature)}"
