"""One Ed25519 key spelt in each form a PASETO key file may take, and a signing check.

The key file tests build their inputs with these instead of the code under test, so that a
bug in the loaders cannot hide in the way the tests write keys.
"""

from __future__ import annotations

import base64

import pyseto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyseto import KeyInterface

__all__ = [
    "GO_PRIVATE_LABEL",
    "b64url",
    "go_pem",
    "go_raw",
    "raw_bytes",
    "pkcs8_pem",
    "signs_for",
    "spki_pem",
    "ssh_line",
]

GO_PRIVATE_LABEL = "ED25519 PRIVATE KEY"
"""The PEM label of Go's raw 64-byte private key."""


def b64url(data: bytes) -> str:
    """Unpadded base64url."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def raw_bytes(key: KeyInterface) -> bytes:
    """The key material of a pyseto key, read back from its PASERK."""
    return base64.urlsafe_b64decode(key.to_paserk().split(".")[2] + "==")


def go_pem(raw: bytes) -> bytes:
    """Go's ``ED25519 PRIVATE KEY`` PEM for raw bytes."""
    body = base64.b64encode(raw).decode("ascii")
    rows = "\n".join(body[i : i + 64] for i in range(0, len(body), 64))
    begin, end = f"-----BEGIN {GO_PRIVATE_LABEL}-----", f"-----END {GO_PRIVATE_LABEL}-----"
    return f"{begin}\n{rows}\n{end}\n".encode()


def go_raw(private: Ed25519PrivateKey) -> bytes:
    """Go's 64-byte private key: the seed followed by the public key."""
    return private.private_bytes_raw() + private.public_key().public_bytes_raw()


def ssh_line(private: Ed25519PrivateKey) -> bytes:
    """The OpenSSH public key line of a private key, without newline."""
    return private.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )


def spki_pem(private: Ed25519PrivateKey) -> bytes:
    """The SubjectPublicKeyInfo PEM of a private key's public key."""
    return private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def pkcs8_pem(private: Ed25519PrivateKey | rsa.RSAPrivateKey) -> bytes:
    """The unencrypted PKCS#8 PEM of a private key."""
    return private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def signs_for(signing: KeyInterface, public: KeyInterface) -> bool:
    """Tell whether a token signed with ``signing`` verifies with ``public``."""
    token = pyseto.encode(signing, b'{"sub":"x"}')
    try:
        return pyseto.decode(public, token).payload == b'{"sub":"x"}'
    except pyseto.VerifyError:
        return False
