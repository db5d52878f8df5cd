"""Load and generate the RSA keys of the WebSaaS terminal, and the node's server id.

Two keys are involved. The SaaS signs its server and user JWTs with its private key, and the
node verifies them with the SaaS public key (``keys/saas_public.pem``). The node signs each
reply token with its own private key (``keys/node_private.pem``), whose public half the SaaS
holds.

Accepted formats are PEM only, unencrypted: ``PUBLIC KEY`` (SubjectPublicKeyInfo) or
``RSA PUBLIC KEY`` (PKCS#1) for public keys, ``PRIVATE KEY`` (PKCS#8) or ``RSA PRIVATE KEY``
(PKCS#1) for private keys. A file must hold exactly one PEM block, and keys shorter than
2048 bits are refused. Error messages never quote key material: callers prefix them with the
file and setting.
"""

from __future__ import annotations

import base64
import re
import secrets
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import (
    RSAPrivateKey,
    RSAPublicKey,
    generate_private_key,
)

from runnergw.keyfiles import check_absent, write_key_pair

__all__ = [
    "MINIMUM_RSA_BITS",
    "RSAKeyError",
    "load_rsa_private_key",
    "load_rsa_public_key",
    "new_server_id",
    "write_rsa_keypair",
]

MINIMUM_RSA_BITS = 2048
"""The shortest RSA modulus accepted for loading or generating keys."""

_PUBLIC_LABELS = ("PUBLIC KEY", "RSA PUBLIC KEY")
_PRIVATE_LABELS = ("PRIVATE KEY", "RSA PRIVATE KEY")
_PEM_BEGIN = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----")
_PEM_ENCRYPTED = re.compile(rb"^Proc-Type:[ \t]*4,[ \t]*ENCRYPTED", re.MULTILINE)
_SERVER_ID_BYTES = 24


class RSAKeyError(Exception):
    """An RSA key file cannot be used.

    The message is plain text for the operator. It never contains key material nor the file
    path: the caller adds the path and the setting name.
    """


def _single_label(data: bytes) -> str:
    """Return the label of the only PEM block in ``data``."""
    labels = [match.group(1).decode("ascii") for match in _PEM_BEGIN.finditer(data)]
    if not labels:
        raise RSAKeyError("no PEM block found (expected an RSA key in PEM form)")
    if len(labels) > 1:
        raise RSAKeyError(f"expected exactly one PEM block, found {len(labels)}")
    return labels[0]


def _check_size(bits: int) -> None:
    """Refuse RSA moduli shorter than the minimum."""
    if bits < MINIMUM_RSA_BITS:
        raise RSAKeyError(f"the RSA key has {bits} bits; at least {MINIMUM_RSA_BITS} are needed")


def load_rsa_public_key(data: bytes) -> RSAPublicKey:
    """Load an RSA public key from the contents of a PEM file.

    Args:
        data: The file contents: one ``PUBLIC KEY`` (SubjectPublicKeyInfo) or
            ``RSA PUBLIC KEY`` (PKCS#1) PEM block.

    Returns:
        The public key.

    Raises:
        RSAKeyError: The file holds no key, several blocks, a private key, a key of another
            type, or an RSA key shorter than 2048 bits.
    """
    label = _single_label(data)
    if "PRIVATE" in label:
        raise RSAKeyError("the file holds a private key; a public key is expected here")
    if label not in _PUBLIC_LABELS:
        raise RSAKeyError(f"PEM block has type {label}; expected PUBLIC KEY or RSA PUBLIC KEY")
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise RSAKeyError("the PEM block is not a valid public key") from None
    if not isinstance(key, RSAPublicKey):
        raise RSAKeyError("the public key is not an RSA key")
    _check_size(key.key_size)
    return key


def load_rsa_private_key(data: bytes) -> RSAPrivateKey:
    """Load an unencrypted RSA private key from the contents of a PEM file.

    Args:
        data: The file contents: one ``PRIVATE KEY`` (PKCS#8) or ``RSA PRIVATE KEY``
            (PKCS#1) PEM block, without encryption.

    Returns:
        The private key.

    Raises:
        RSAKeyError: The file holds no key, several blocks, a public or encrypted key, a key
            of another type, or an RSA key shorter than 2048 bits.
    """
    label = _single_label(data)
    if label == "ENCRYPTED PRIVATE KEY" or _PEM_ENCRYPTED.search(data):
        raise RSAKeyError("the private key is encrypted; encrypted keys are not supported")
    if label in _PUBLIC_LABELS:
        raise RSAKeyError("the file holds a public key; the private key is expected here")
    if label not in _PRIVATE_LABELS:
        raise RSAKeyError(
            f"PEM block has type {label}; expected PRIVATE KEY or RSA PRIVATE KEY"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise RSAKeyError("the PEM block is not a valid private key") from None
    if not isinstance(key, RSAPrivateKey):
        raise RSAKeyError("the private key is not an RSA key")
    _check_size(key.key_size)
    return key


def write_rsa_keypair(
    private_path: Path, public_path: Path, *, bits: int = 3072, overwrite: bool = False
) -> None:
    """Generate an RSA key pair and write it as PEM files.

    The private key is written as unencrypted PKCS#8 (``PRIVATE KEY``) in a file created with
    mode 0600, so it is never readable by others, not even briefly; the public key as
    SubjectPublicKeyInfo (``PUBLIC KEY``) with mode 0644. Parent directories are created.

    Args:
        private_path: Where to write the private key.
        public_path: Where to write the public key.
        bits: The modulus size; at least 2048.
        overwrite: Replace existing files instead of refusing.

    Raises:
        ValueError: ``bits`` is below 2048.
        FileExistsError: One of the files exists and ``overwrite`` is false; nothing is
            written then. ``filename`` names the file.
        OSError: A file or directory could not be written.
    """
    if bits < MINIMUM_RSA_BITS:
        raise ValueError(f"an RSA key needs at least {MINIMUM_RSA_BITS} bits, not {bits}")
    if not overwrite:
        check_absent(private_path, public_path)
    private = generate_private_key(public_exponent=65537, key_size=bits)
    private_pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    write_key_pair(private_path, private_pem, public_path, public_pem, overwrite=overwrite)


def new_server_id() -> str:
    """Generate a server id for the node, in the usual ``base64:`` form.

    Returns:
        ``base64:`` followed by 24 random bytes in standard base64.
    """
    return "base64:" + base64.b64encode(secrets.token_bytes(_SERVER_ID_BYTES)).decode("ascii")
