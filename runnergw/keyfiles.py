"""Write a key pair to disk: the private half created 0600 (never readable by others, not even
briefly), the public half 0644, no overwriting unless asked."""

from __future__ import annotations

import errno
import os
import secrets
from pathlib import Path

__all__ = ["check_absent", "write_key_pair"]


def _write_new_file(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` with ``mode`` and write ``data``; fail if it already exists."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags, mode)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def _replace_file(path: Path, data: bytes, mode: int) -> None:
    """Write ``data`` to a fresh file created with ``mode`` and move it over ``path``."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        _write_new_file(temporary, data, mode)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def check_absent(*paths: Path) -> None:
    """Refuse before anything is written when one of the files exists.

    Raises:
        FileExistsError: with ``filename`` naming the file.
    """
    for path in paths:
        if path.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(path))


def write_key_pair(private_path: Path, private_data: bytes, public_path: Path,
                   public_data: bytes, *, overwrite: bool = False) -> None:
    """Write both files, creating parent directories.

    Raises:
        FileExistsError: a file exists and ``overwrite`` is false (nothing is written then).
        OSError: a file or directory could not be written.
    """
    if not overwrite:
        check_absent(private_path, public_path)
    write = _replace_file if overwrite else _write_new_file
    for path, data, mode in ((private_path, private_data, 0o600),
                             (public_path, public_data, 0o644)):
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path, data, mode)
