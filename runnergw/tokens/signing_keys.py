"""The private key file that signs ``vN.public`` tokens, and the public key it implies.

``paseto.key`` holds exactly one Ed25519 key: Go's ``ED25519 PRIVATE KEY`` PEM (the raw
64-byte form, seed then public key), a PKCS#8 ``PRIVATE KEY`` PEM, or a ``kN.secret``
PASERK.  pyseto accepts a ``k4.secret`` whose public half does not match its seed; the two
halves are compared here.  Error messages never quote key material: callers prefix them with
the file and setting.
"""

from __future__ import annotations

import hmac

import pyseto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pyseto import KeyInterface

from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.key_formats import (
    GO_PRIVATE_KEY_LABEL,
    PemBlock,
    TextLine,
    check_key,
    check_version,
    key_file_items,
    looks_like_paserk,
    parse_paserk,
)
from runnergw.tokens.public_keys import public_key_from_raw

__all__ = ["load_signing_key", "public_key_from_signing_key"]

_SEED_BYTES = 32


def _signing_key_from_raw(raw: bytes, version: int, where: str) -> KeyInterface:
    """Build a signing key from Go's 64-byte form (seed then public key), checking both halves."""
    if len(raw) != 2 * _SEED_BYTES:
        raise KeyFileError(
            f"{where}: an Ed25519 private key is 64 bytes (seed and public key), not {len(raw)}"
        )
    seed, public = raw[:_SEED_BYTES], raw[_SEED_BYTES:]
    derived = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()
    if not hmac.compare_digest(derived, public):
        raise KeyFileError(f"{where}: the public half does not match the private seed")
    return pyseto.Key.from_asymmetric_key_params(version, d=seed)


def _signing_key_from_pem(block: PemBlock, version: int) -> KeyInterface:
    """Load a PEM block found in a private key file."""
    where = f"PEM block on line {block.line}"
    if block.label == GO_PRIVATE_KEY_LABEL:
        return _signing_key_from_raw(block.der, version, where)
    if block.label == "ENCRYPTED PRIVATE KEY":
        raise KeyFileError(f"{where} is encrypted; encrypted keys are not supported")
    if block.label == "PUBLIC KEY":
        raise KeyFileError(f"{where} is a public key; signing needs the private key")
    if block.label != "PRIVATE KEY":
        raise KeyFileError(
            f"{where} has type {block.label}; expected {GO_PRIVATE_KEY_LABEL} or PRIVATE KEY"
        )
    try:
        loaded = serialization.load_der_private_key(block.der, password=None)
    except (ValueError, TypeError):
        raise KeyFileError(f"{where} is not a valid PKCS#8 private key") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise KeyFileError(f"{where} is not an Ed25519 key")
    seed = loaded.private_bytes_raw()
    return pyseto.Key.from_asymmetric_key_params(version, d=seed)


def _signing_key_from_line(line: TextLine, version: int) -> KeyInterface:
    """Load one text line of a private key file (a ``kN.secret`` PASERK)."""
    where = f"line {line.line}"
    if not looks_like_paserk(line.text):
        raise KeyFileError(
            f"{where} is not a recognised private key (expected PEM or k{version}.secret)"
        )
    paserk = parse_paserk(line.text, version, where)
    if paserk.kind != "secret":
        raise KeyFileError(f"{where} is a {paserk.kind} PASERK; expected k{version}.secret")
    return _signing_key_from_raw(paserk.data, version, where)


def load_signing_key(data: bytes, version: int) -> KeyInterface:
    """Load the Ed25519 signing key from the contents of a private key file.

    Accepted forms: Go's ``ED25519 PRIVATE KEY`` PEM (64 raw bytes, whose public half must
    match the seed), PKCS#8 ``PRIVATE KEY`` PEM holding an Ed25519 key, or a ``kN.secret``
    PASERK. The file must hold exactly one key.

    Args:
        data: The file contents.
        version: The PASETO version the key signs (4 or 2).

    Returns:
        A secret ``public``-purpose key that pyseto can sign with.

    Raises:
        KeyFileError: The file holds no key, several keys, or a key of another type,
            version or purpose.
    """
    check_version(version)
    keys: list[KeyInterface] = []
    for item in key_file_items(data):
        if isinstance(item, PemBlock):
            keys.append(_signing_key_from_pem(item, version))
        else:
            keys.append(_signing_key_from_line(item, version))
    if len(keys) != 1:
        raise KeyFileError(f"expected exactly one private key, found {len(keys)}")
    return check_key(keys[0], version, "public", secret=True)


def public_key_from_signing_key(key: KeyInterface) -> KeyInterface:
    """Return the verification key that matches a signing key.

    Args:
        key: A secret ``public``-purpose key (from :func:`load_signing_key`).

    Returns:
        The public key of the same version.

    Raises:
        KeyFileError: ``key`` is not an Ed25519 signing key of a supported version.
    """
    check_version(key.version)
    check_key(key, key.version, "public", secret=True)
    paserk = parse_paserk(key.to_paserk(), key.version, "the signing key")
    public = public_key_from_raw(paserk.data[_SEED_BYTES:], key.version, "the signing key")
    return check_key(public, key.version, "public", secret=False)
