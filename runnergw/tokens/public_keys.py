"""The public key file that verifies ``vN.public`` tokens.

``paseto.pub`` lists one or more Ed25519 public keys, so that they can be rotated: OpenSSH
``ssh-ed25519`` lines (with an optional comment), PEM ``PUBLIC KEY`` blocks and
``kN.public`` PASERKs, freely mixed.  A private key found in it is refused, never derived
from.  Error messages never quote key material: callers prefix them with the file and
setting.
"""

from __future__ import annotations

import re

import pyseto
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pyseto import KeyInterface

from runnergw.tokens.errors import KeyFileError
from runnergw.tokens.key_formats import (
    PemBlock,
    TextLine,
    check_key,
    check_version,
    key_file_items,
    looks_like_paserk,
    parse_paserk,
)

__all__ = ["load_public_keys", "public_key_from_raw"]

_SSH_KEY_TYPE = re.compile(r"(?:ssh|ecdsa|sk)-[a-z0-9@.-]{1,60}")
_PUBLIC_KEY_BYTES = 32


def public_key_from_raw(raw: bytes, version: int, where: str) -> KeyInterface:
    """Build a public verification key from 32 raw Ed25519 bytes.

    Args:
        raw: The public key bytes.
        version: The PASETO version the key verifies (4 or 2).
        where: Where the bytes come from, to start error messages with.

    Returns:
        A non-secret ``public``-purpose key.

    Raises:
        KeyFileError: ``raw`` is not 32 bytes long.
    """
    if len(raw) != _PUBLIC_KEY_BYTES:
        raise KeyFileError(f"{where}: an Ed25519 public key is 32 bytes, not {len(raw)}")
    return pyseto.Key.from_asymmetric_key_params(version, x=raw)


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
    return public_key_from_raw(loaded.public_bytes_raw(), version, where)


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
    return public_key_from_raw(loaded.public_bytes_raw(), version, where)


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
    return public_key_from_raw(paserk.data, version, where)


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
