"""Load, check and generate the keys behind PASETO bearer tokens.

The accepted file formats, and the checks every key passes, are described in
:mod:`runnergw.tokens.key_formats`.  Error messages never quote key material: callers prefix
them with the file and setting.
"""

from __future__ import annotations

import hmac
import re

import pyseto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
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

__all__ = [
    "load_public_keys",
    "load_signing_key",
    "public_key_from_signing_key",
]

_SSH_KEY_TYPE = re.compile(r"(?:ssh|ecdsa|sk)-[a-z0-9@.-]{1,60}")
_SEED_BYTES = 32


def _public_key_from_raw(raw: bytes, version: int, where: str) -> KeyInterface:
    """Build a public verification key from 32 raw Ed25519 bytes."""
    if len(raw) != _SEED_BYTES:
        raise KeyFileError(f"{where}: an Ed25519 public key is 32 bytes, not {len(raw)}")
    return pyseto.Key.from_asymmetric_key_params(version, x=raw)


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


def _public_key_from_pem(block: PemBlock, version: int) -> KeyInterface:
    """Load a PEM block found in a public key file."""
    where = f"PEM block on line {block.line}"
    if "PRIVATE" in block.label:
        raise KeyFileError(f"{where} is a private key; a public key file must hold public keys")
    if block.label != "PUBLIC KEY":
        raise KeyFileError(f"{where} has type {block.label}; expected PUBLIC KEY")
    try:
        loaded = serialization.load_der_public_key(block.der)
    except (ValueError, TypeError):
        raise KeyFileError(f"{where} is not a valid public key") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise KeyFileError(f"{where} is not an Ed25519 key")
    return _public_key_from_raw(loaded.public_bytes_raw(), version, where)


def _public_key_from_ssh(line: TextLine, version: int) -> KeyInterface:
    """Load an OpenSSH ``ssh-ed25519`` public key line."""
    where = f"line {line.line}"
    fields = line.text.split()
    if fields[0] != "ssh-ed25519":
        raise KeyFileError(f"{where} has key type {fields[0]}; only ssh-ed25519 is accepted")
    if len(fields) < 2:
        raise KeyFileError(f"{where} is an incomplete ssh-ed25519 line")
    try:
        loaded = serialization.load_ssh_public_key(f"{fields[0]} {fields[1]}".encode("ascii"))
    except (ValueError, TypeError, UnicodeEncodeError):
        raise KeyFileError(f"{where} is not a valid ssh-ed25519 key") from None
    if not isinstance(loaded, Ed25519PublicKey):
        raise KeyFileError(f"{where} is not an Ed25519 key")
    return _public_key_from_raw(loaded.public_bytes_raw(), version, where)


def _public_key_from_line(line: TextLine, version: int) -> KeyInterface:
    """Load one text line of a public key file (OpenSSH or PASERK)."""
    first = line.text.split()[0]
    if _SSH_KEY_TYPE.fullmatch(first):
        return _public_key_from_ssh(line, version)
    where = f"line {line.line}"
    if not looks_like_paserk(line.text):
        raise KeyFileError(
            f"{where} is not a recognised public key (expected ssh-ed25519, PEM or"
            f" k{version}.public)"
        )
    paserk = parse_paserk(line.text, version, where)
    if paserk.kind != "public":
        raise KeyFileError(f"{where} is a {paserk.kind} PASERK; expected k{version}.public")
    return _public_key_from_raw(paserk.data, version, where)


def load_public_keys(data: bytes, version: int) -> list[KeyInterface]:
    """Load every Ed25519 public key from the contents of a public key file.

    Accepted forms, one key per line or block and freely mixed: OpenSSH ``ssh-ed25519``
    lines (with an optional comment), PEM ``PUBLIC KEY`` blocks, and ``kN.public`` PASERKs.
    Blank lines and lines starting with ``#`` are ignored.

    Args:
        data: The file contents.
        version: The PASETO version the keys verify (4 or 2).

    Returns:
        The verification keys, in file order.

    Raises:
        KeyFileError: The file holds no key, or a key of another type, version or purpose.
    """
    check_version(version)
    keys: list[KeyInterface] = []
    for item in key_file_items(data):
        if isinstance(item, PemBlock):
            key = _public_key_from_pem(item, version)
        else:
            key = _public_key_from_line(item, version)
        keys.append(check_key(key, version, "public", secret=False))
    if not keys:
        raise KeyFileError("no public key found")
    return keys


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
    public = _public_key_from_raw(paserk.data[_SEED_BYTES:], key.version, "the signing key")
    return check_key(public, key.version, "public", secret=False)
