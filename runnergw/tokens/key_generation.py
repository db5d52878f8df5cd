"""Make new PASETO keys: an Ed25519 signing pair, and the symmetric key for ``vN.local`` tokens.

The pair is written in the Go ``runner-gateway`` file formats, the private half never
readable by others (see :mod:`runnergw.keyfiles`).  The files read back with
:func:`runnergw.tokens.signing_keys.load_signing_key` and
:func:`runnergw.tokens.public_keys.load_public_keys`, and with the Go tool.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from runnergw.keyfiles import check_absent, write_key_pair
from runnergw.tokens.key_formats import GO_PRIVATE_KEY_LABEL, encode_pem
from runnergw.tokens.local_keys import LOCAL_KEY_BYTES

__all__ = ["generate_local_key_hex", "generate_signing_keypair", "write_signing_keypair"]


def generate_signing_keypair() -> tuple[bytes, bytes]:
    """Generate a new Ed25519 key pair in the Go ``runner-gateway`` file formats.

    Returns:
        ``(private_file, public_file)``: an ``ED25519 PRIVATE KEY`` PEM block holding the
        64-byte seed-and-public-key form, and an OpenSSH ``ssh-ed25519 AAAA…`` line.
    """
    private = Ed25519PrivateKey.generate()
    public = private.public_key()
    raw = private.private_bytes_raw() + public.public_bytes_raw()
    ssh_line = public.public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return encode_pem(GO_PRIVATE_KEY_LABEL, raw), ssh_line + b"\n"


def write_signing_keypair(key_path: Path, pub_path: Path, *, overwrite: bool = False) -> None:
    """Generate a key pair and write it: the private key with mode 0600, the public with 0644.

    Parent directories are created. The private key file is created with its final mode, so
    it is never readable by others, not even briefly.

    Args:
        key_path: Where to write the ``ED25519 PRIVATE KEY`` PEM file.
        pub_path: Where to write the OpenSSH public key line.
        overwrite: Replace existing files instead of refusing.

    Raises:
        FileExistsError: One of the files exists and ``overwrite`` is false; nothing is
            written then.
        OSError: A file or directory could not be written.
    """
    if not overwrite:
        check_absent(key_path, pub_path)
    private_file, public_file = generate_signing_keypair()
    write_key_pair(key_path, private_file, pub_path, public_file, overwrite=overwrite)


def generate_local_key_hex() -> str:
    """Generate a new symmetric key for ``vN.local`` tokens.

    Returns:
        64 lowercase hexadecimal characters (32 random bytes).
    """
    return secrets.token_hex(LOCAL_KEY_BYTES)
