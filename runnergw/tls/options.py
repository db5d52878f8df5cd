"""The server's TLS settings, built from the certificate and key files.

The server accepts TLS 1.2 and 1.3 only.  For TLS 1.2 it offers only ECDHE key exchange with
AES-GCM or ChaCha20-Poly1305; TLS 1.3 suites are all AEAD already.  Over ALPN it agrees to
``http/1.1`` and nothing else, whatever the wrapped protocol factory advertises, because the
gateway speaks HTTP/1.1; a client that offers no ``http/1.1`` gets no ALPN answer.

The OpenSSL context is built at load time, so problems surface then rather than on the
first connection.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import attrs
from cryptography import x509
from OpenSSL import SSL
from OpenSSL.crypto import X509, PKey
from twisted.internet.ssl import AcceptableCiphers, CertificateOptions, TLSVersion

from runnergw.tls.certificate_files import TLSConfigError, read_server_certificate

__all__ = ["LoadedServerTLS", "load_certificate_options", "load_server_tls"]

_TLS12_CIPHERS: Final = "ECDHE+AESGCM:ECDHE+CHACHA20"
"""OpenSSL cipher string for TLS 1.2: forward-secret key exchange, AEAD ciphers only."""

_HTTP_1_1: Final = b"http/1.1"
"""The only protocol the gateway agrees to over ALPN."""


@attrs.frozen
class LoadedServerTLS:
    """One consistent load of the certificate chain and key, ready to serve.

    Attributes:
        options: Twisted's TLS options built from the files.
        context: The OpenSSL context new connections are made from.
        leaf: The server certificate (first in the chain file).
        intermediates: How many more certificates the chain file holds.
    """

    options: CertificateOptions
    context: SSL.Context
    leaf: x509.Certificate
    intermediates: int


def load_certificate_options(certificate_path: str, key_path: str) -> CertificateOptions:
    """Read a PEM certificate chain and private key and build server TLS options.

    The first certificate in ``certificate_path`` is served as the server certificate and
    the rest as its chain.  The options allow TLS 1.2 and 1.3 only, restrict TLS 1.2 to
    ECDHE with AES-GCM or ChaCha20-Poly1305, and agree to ``http/1.1`` only over ALPN.  The
    OpenSSL context is built at once, so problems surface here rather than on the first
    connection.

    This function does not look at the expiry date; see
    :func:`runnergw.tls.certificate_files.certificate_not_after`.

    Args:
        certificate_path: PEM file with the server certificate first, then intermediates
            (acme.sh ``fullchain.cer``).
        key_path: PEM file with the unencrypted RSA or EC private key.

    Returns:
        Options whose ``serverConnectionForTLS`` makes server connections.

    Raises:
        TLSConfigError: A file cannot be read, holds no usable PEM certificate or key, the
            key is encrypted, or the key does not belong to the server certificate.
    """
    return load_server_tls(certificate_path, key_path).options


def load_server_tls(certificate_path: str, key_path: str) -> LoadedServerTLS:
    """Read, check and build everything needed to serve one certificate.

    Args:
        certificate_path: PEM chain file, server certificate first.
        key_path: PEM private key file.

    Returns:
        The options, the ready OpenSSL context and the server certificate.

    Raises:
        TLSConfigError: The files cannot be served.
    """
    certificate = read_server_certificate(certificate_path, key_path)
    options = CertificateOptions(
        privateKey=PKey.from_cryptography_key(certificate.key),
        certificate=X509.from_cryptography(certificate.leaf),
        extraCertChain=[X509.from_cryptography(link) for link in certificate.chain],
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(_TLS12_CIPHERS),
    )
    try:
        context = options.getContext()
    except SSL.Error as error:
        raise TLSConfigError(
            certificate_path, f"OpenSSL refused the certificate: {_openssl_reason(error)}"
        ) from error
    # Replaces the callback Twisted installs, which would also agree to whatever the
    # wrapped factory advertises (twisted.web's Site offers h2 when h2 is installed).
    context.set_alpn_select_callback(_select_http_1_1)
    return LoadedServerTLS(
        options=options,
        context=context,
        leaf=certificate.leaf,
        intermediates=len(certificate.chain),
    )


def _openssl_reason(error: SSL.Error) -> str:
    """Turn an OpenSSL error stack into a short readable reason."""
    stack = error.args[0] if error.args else None
    if isinstance(stack, list) and stack:
        return "; ".join(str(entry[-1]) for entry in stack)
    return str(error)


def _select_http_1_1(connection: SSL.Connection, offered: Sequence[bytes]) -> object:
    """Choose the ALPN protocol for a server connection.

    Args:
        connection: The connection negotiating.
        offered: The protocols the client offered.

    Returns:
        ``b"http/1.1"`` when offered; otherwise pyOpenSSL's ``NO_OVERLAPPING_PROTOCOLS``, so
        the handshake goes on with no protocol agreed instead of failing.
    """
    if _HTTP_1_1 in offered:
        return _HTTP_1_1
    return SSL.NO_OVERLAPPING_PROTOCOLS
