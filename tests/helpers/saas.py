"""A test SaaS: its own RSA key signs server and user tokens; it builds multipart requests."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["TestSaas", "multipart_body"]

_KEYS: dict[str, rsa.RSAPrivateKey] = {}


def _key(name: str) -> rsa.RSAPrivateKey:
    """One 2048-bit key per name per test run (key generation is slow)."""
    if name not in _KEYS:
        _KEYS[name] = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return _KEYS[name]


class TestSaas:
    """Holds the SaaS key pair and the node key pair, written as PEM files into ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.private_key = _key("saas")
        self.node_key = _key("node")
        directory.mkdir(parents=True, exist_ok=True)
        self.public_path = directory / "saas_public.pem"
        self.public_path.write_bytes(self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.node_private_path = directory / "node_private.pem"
        self.node_private_path.write_bytes(self.node_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        os.chmod(self.node_private_path, 0o600)

    def headers(self, *, role: str = "pro", subject: str = "user-1",
                user_age: float = 0.0, lifetime: float = 600.0) -> dict[str, str]:
        """``Authorization`` and ``X-User-Token`` as the SaaS sends them."""
        now = time.time()
        server = jwt.encode({"iss": "saas", "exp": int(now + lifetime)}, self.private_key,
                            algorithm="RS256")
        user = jwt.encode({"sub": subject, "role": role, "iat": int(now - user_age),
                           "exp": int(now + lifetime)}, self.private_key, algorithm="RS256")
        return {"Authorization": f"Bearer {server}", "X-User-Token": user}

    def node_public_key(self) -> Any:
        """The node's public key, to check reply tokens."""
        return self.node_key.public_key()


def multipart_body(fields: Mapping[str, str], files: Mapping[str, tuple[str, str, bytes]],
                   boundary: str = "runnergw-test-boundary") -> tuple[bytes, str]:
    """A multipart/form-data body; ``files`` maps field to (file name, content type, data)."""
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                     .encode() + value.encode() + b"\r\n")
    for name, (filename, content_type, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; '
                     f'filename="{filename}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
                     + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def input_form(values: Mapping[str, Any]) -> str:
    """The ``input_form`` field: a JSON object string."""
    return json.dumps(dict(values))
