"""The text forms of PASETO key files and settings, shared by the key loaders.

The file formats follow the Go ``runner-gateway`` tool that runnergw replaces:

* ``paseto.pub`` is an OpenSSH ``ssh-ed25519 AAAA…`` line (a trailing comment is allowed);
  PEM ``PUBLIC KEY`` blocks and ``k4.public``/``k2.public`` PASERKs are accepted too, and a
  file may list several keys so that they can be rotated
  (:mod:`runnergw.tokens.public_keys`).
* ``paseto.key`` is a PEM block of type ``ED25519 PRIVATE KEY`` holding Go's raw 64-byte
  private key (the 32-byte seed followed by the 32-byte public key); PKCS#8 ``PRIVATE KEY``
  PEM and ``k4.secret``/``k2.secret`` PASERKs are accepted too
  (:mod:`runnergw.tokens.signing_keys`).
* the symmetric key for ``vN.local`` tokens is 64 hexadecimal characters or a
  ``k4.local``/``k2.local`` PASERK (:mod:`runnergw.tokens.local_keys`).

This module splits a key file into PEM blocks and meaningful lines, writes PEM as Go does,
decodes PASERKs, and checks that a key pyseto built is the kind that was asked for.

pyseto is more lenient than the PASETO specification in a few places (it takes ``v4.local``
keys of any length, PASERKs of another version and ``k4.secret`` PASERKs whose public half
does not match the seed), so every loader checks lengths, versions and purposes itself.
Error messages never quote key material: callers prefix them with the file and setting.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator

import attrs
from pyseto import KeyInterface

from runnergw.tokens.base64url import decode_canonical_base64url
from runnergw.tokens.errors import KeyFileError

__all__ = [
    "GO_PRIVATE_KEY_LABEL",
    "SUPPORTED_KEY_VERSIONS",
    "Paserk",
    "PemBlock",
    "TextLine",
    "check_key",
    "check_version",
    "encode_pem",
    "key_file_items",
    "looks_like_paserk",
    "parse_paserk",
]

SUPPORTED_KEY_VERSIONS: tuple[int, ...] = (2, 4)
"""PASETO versions whose keys runnergw handles (both use Ed25519 and 32-byte local keys)."""

GO_PRIVATE_KEY_LABEL = "ED25519 PRIVATE KEY"
"""The PEM label Go's ``runner-gateway`` writes around its raw 64-byte private key."""

_PASERK = re.compile(r"k([0-9]+)\.([a-z-]+)\.([A-Za-z0-9_-]+)")
_PEM_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")


@attrs.frozen
class PemBlock:
    """One PEM block of a key file.

    Attributes:
        label: The type between ``BEGIN`` and the dashes, e.g. ``PUBLIC KEY``.
        der: The decoded body.
        line: The line of the ``BEGIN`` marker, counted from 1.
    """

    label: str
    der: bytes
    line: int


@attrs.frozen
class TextLine:
    """One non-blank, non-comment line of a key file that is outside every PEM block.

    Attributes:
        text: The line without surrounding whitespace.
        line: Its line number, counted from 1.
    """

    text: str
    line: int


@attrs.frozen
class Paserk:
    """A decoded plain PASERK (``kN.type.data``).

    Attributes:
        version: The ``N`` of ``kN``.
        kind: ``local``, ``public`` or ``secret``.
        data: The decoded key bytes.
    """

    version: int
    kind: str
    data: bytes


def check_version(version: int) -> None:
    """Refuse PASETO versions other than 2 and 4.

    Raises:
        KeyFileError: ``version`` is not in :data:`SUPPORTED_KEY_VERSIONS`.
    """
    if version not in SUPPORTED_KEY_VERSIONS:
        raise KeyFileError(f"PASETO version {version} is not supported (only 4 and 2)")


def check_key(key: KeyInterface, version: int, purpose: str, *, secret: bool) -> KeyInterface:
    """Make sure pyseto built the kind of key that was asked for.

    Args:
        key: The key pyseto built.
        version: The PASETO version asked for.
        purpose: ``local`` or ``public``.
        secret: Whether a secret (signing or symmetric) key was asked for.

    Returns:
        ``key``, unchanged.

    Raises:
        KeyFileError: The key has another version, purpose or secrecy.
    """
    if key.version != version:
        raise KeyFileError(f"key is for PASETO version {key.version}, expected {version}")
    if key.purpose != purpose:
        raise KeyFileError(f"key is a {key.purpose} key, expected a {purpose} key")
    if key.is_secret != secret:
        wanted = "secret" if secret else "public"
        raise KeyFileError(f"key is not a {wanted} key")
    return key


def key_file_items(data: bytes) -> Iterator[PemBlock | TextLine]:
    """Split a key file into PEM blocks and meaningful lines (blank and ``#`` lines skipped).

    Args:
        data: The file contents, UTF-8 with or without a byte order mark.

    Yields:
        Each PEM block and each other line, in file order.

    Raises:
        KeyFileError: The file is not text, or a PEM block has no END line, has headers
            (as encrypted keys do) or is not valid base64.
    """
    rows = _text_of(data).splitlines()
    index = 0
    while index < len(rows):
        row = rows[index].strip()
        start = index + 1
        index += 1
        if not row or row.startswith("#"):
            continue
        begin = _PEM_BEGIN.fullmatch(row)
        if begin is None:
            yield TextLine(row, start)
            continue
        label = begin.group(1)
        end_marker = f"-----END {label}-----"
        body: list[str] = []
        while index < len(rows) and rows[index].strip() != end_marker:
            body.append(rows[index])
            index += 1
        if index == len(rows):
            raise KeyFileError(f"PEM block {label} on line {start} has no END line")
        index += 1
        yield PemBlock(label, _pem_der(body, label, start), start)


def encode_pem(label: str, der: bytes) -> bytes:
    """Encode bytes as a PEM block with 64-character lines, as Go's ``encoding/pem`` does."""
    encoded = base64.b64encode(der).decode("ascii")
    rows = [encoded[offset : offset + 64] for offset in range(0, len(encoded), 64)]
    text = "\n".join([f"-----BEGIN {label}-----", *rows, f"-----END {label}-----", ""])
    return text.encode("ascii")


def looks_like_paserk(text: str) -> bool:
    """Tell whether text has the shape ``kN.type.data`` of a plain PASERK."""
    return _PASERK.fullmatch(text) is not None


def parse_paserk(text: str, version: int, where: str) -> Paserk:
    """Decode a plain PASERK and check that its version matches.

    Args:
        text: The PASERK.
        version: The PASETO version the key is for.
        where: Where the text comes from, to start error messages with.

    Returns:
        The decoded PASERK, of type ``local``, ``public`` or ``secret``.

    Raises:
        KeyFileError: The text is not a canonical PASERK, is for another version, or is
            of another type.
    """
    match = _PASERK.fullmatch(text)
    if match is None:
        raise KeyFileError(f"{where} is not a valid PASERK")
    paserk_version = int(match.group(1))
    kind = match.group(2)
    if paserk_version != version:
        raise KeyFileError(
            f"{where} is a k{paserk_version} PASERK; PASETO version {version} needs k{version}"
        )
    if kind not in ("local", "public", "secret"):
        raise KeyFileError(f"{where}: PASERK type {kind} is not supported")
    try:
        data = decode_canonical_base64url(match.group(3))
    except ValueError:
        raise KeyFileError(f"{where} is not a valid PASERK") from None
    return Paserk(paserk_version, kind, data)


def _text_of(data: bytes) -> str:
    """Decode a key file as UTF-8 text."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise KeyFileError("not a text key file") from None


def _pem_der(body: list[str], label: str, line: int) -> bytes:
    """Decode the base64 body of a PEM block."""
    if any(":" in row for row in body):
        raise KeyFileError(
            f"PEM block {label} on line {line} has headers; encrypted keys are not supported"
        )
    try:
        return base64.b64decode("".join(row.strip() for row in body), validate=True)
    except (binascii.Error, ValueError):
        raise KeyFileError(f"PEM block {label} on line {line} is not valid base64") from None
