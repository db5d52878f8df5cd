"""Read and check the server's PEM certificate chain and private key files.

Operators point ``server.certificatePath`` at an acme.sh ``fullchain.cer`` (the server
certificate first, then the intermediates, all PEM) and ``server.keyPath`` at the PEM private
key (RSA or EC, in PKCS#1, SEC1 or PKCS#8 form, unencrypted).

Every problem is a :class:`TLSConfigError` naming the file at fault, with a hint for the
usual mistakes: swapped paths, an encrypted key, a chain whose server certificate is not
first.  Expiry is not checked here; :func:`certificate_not_after` gives the date to whoever
reports it.
"""

from __future__ import annotations

from datetime import datetime

import attrs
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

__all__ = [
    "ServerCertificate",
    "TLSConfigError",
    "certificate_not_after",
    "read_server_certificate",
]


class TLSConfigError(Exception):
    """A certificate or key file the gateway cannot serve.

    ``str()`` gives ``"<path>: <message>"``, ready to show to the operator.

    Attributes:
        path: The file at fault.
        message: What is wrong with it.
    """

    def __init__(self, path: str, message: str) -> None:
        """Record the file at fault and what is wrong with it.

        Args:
            path: The file at fault.
            message: What is wrong with it.
        """
        super().__init__(path, message)
        self.path = path
        self.message = message

    def __str__(self) -> str:
        """Return ``"<path>: <message>"``."""
        return f"{self.path}: {self.message}"


@attrs.frozen
class ServerCertificate:
    """A server certificate, its chain and the private key that belongs to it.

    Attributes:
        leaf: The server certificate (first in the chain file).
        chain: The certificates that follow it in the chain file (the intermediates).
        key: The private key, checked to match ``leaf``.
    """

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def read_server_certificate(certificate_path: str, key_path: str) -> ServerCertificate:
    """Read a PEM certificate chain and its private key, and check that they belong together.

    Both files are read before either is parsed, so a missing file is reported before a
    damaged one.

    Args:
        certificate_path: PEM file with the server certificate first, then intermediates
            (acme.sh ``fullchain.cer``).
        key_path: PEM file with the unencrypted RSA or EC private key.

    Returns:
        The server certificate, its chain and its key.

    Raises:
        TLSConfigError: A file cannot be read, holds no usable PEM certificate or key, the
            key is encrypted, or the key does not belong to the server certificate.
    """
    certificate_data = _read(certificate_path, "certificate")
    key_data = _read(key_path, "private key")
    certificates = _parse_certificates(certificate_path, certificate_data)
    key = _parse_key(key_path, key_data)
    leaf, chain = certificates[0], certificates[1:]
    key_public = _public_key_der(key.public_key())
    if _public_key_der(leaf.public_key()) != key_public:
        message = f"private key does not match the certificate {certificate_path}"
        for position, certificate in enumerate(chain, start=2):
            if _public_key_der(certificate.public_key()) == key_public:
                message += (
                    f" (it matches certificate number {position} in that file;"
                    " the server certificate must come first)"
                )
                break
        raise TLSConfigError(key_path, message)
    return ServerCertificate(leaf=leaf, chain=tuple(chain), key=key)


def certificate_not_after(certificate_path: str) -> datetime:
    """Return when the server certificate in a PEM chain file stops being valid.

    Args:
        certificate_path: PEM file with the server certificate first.

    Returns:
        The server certificate's not-after time, timezone-aware in UTC.

    Raises:
        TLSConfigError: The file cannot be read or holds no usable PEM certificate.
    """
    certificates = _parse_certificates(
        certificate_path, _read(certificate_path, "certificate")
    )
    return certificates[0].not_valid_after_utc


def _read(path: str, what: str) -> bytes:
    """Return a file's bytes, or raise TLSConfigError with the operating system's reason."""
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError as error:
        raise TLSConfigError(
            path, f"cannot read the {what} file: {error.strerror or error}"
        ) from error


def _parse_certificates(path: str, data: bytes) -> list[x509.Certificate]:
    """Parse every PEM certificate in a chain file, server certificate first."""
    try:
        certificates = x509.load_pem_x509_certificates(data)
    except ValueError as error:
        if b"-----BEGIN CERTIFICATE-----" in data:
            message = f"holds a damaged PEM certificate ({error})"
        elif b"PRIVATE KEY-----" in data:
            message = (
                "holds a private key, not a certificate"
                " (are the certificate and key paths swapped?)"
            )
        else:
            message = "holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
        raise TLSConfigError(path, message) from error
    if not certificates:
        raise TLSConfigError(
            path, "holds no PEM certificate (expected -----BEGIN CERTIFICATE-----)"
        )
    return certificates


def _parse_key(path: str, data: bytes) -> rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey:
    """Parse an unencrypted PEM RSA or EC private key (PKCS#1, SEC1 or PKCS#8)."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as error:
        raise TLSConfigError(
            path, "the private key is encrypted; the gateway needs an unencrypted PEM key"
        ) from error
    except (ValueError, UnsupportedAlgorithm) as error:
        if b"PRIVATE KEY-----" not in data and b"-----BEGIN CERTIFICATE-----" in data:
            message = (
                "holds a certificate, not a private key"
                " (are the certificate and key paths swapped?)"
            )
        else:
            message = (
                "holds no usable PEM private key (expected -----BEGIN PRIVATE KEY-----,"
                " -----BEGIN RSA PRIVATE KEY----- or -----BEGIN EC PRIVATE KEY-----)"
            )
        raise TLSConfigError(path, message) from error
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise TLSConfigError(
            path, f"holds an unsupported {type(key).__name__}; use an RSA or EC key"
        )
    return key


def _public_key_der(public_key: CertificatePublicKeyTypes) -> bytes:
    """Encode a public key as DER SubjectPublicKeyInfo, for comparing keys."""
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
