"""Write real X.509 certificates for TLS tests.

``make_ca`` creates a root certificate authority and an intermediate signed by it, the way
public ACME authorities are arranged.  ``CA.issue`` signs a server certificate with the
intermediate and writes it the way acme.sh does: ``<name>.fullchain.cer`` holds the server
certificate first and then the intermediate, ``<name>.key`` holds the private key.  The
root is written to ``ca.pem`` for clients to trust.

Keys are EC P-256 unless RSA is asked for, so that generating certificates stays fast.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Literal

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CA", "IssuedCert", "KeyFormat", "KeyType", "fingerprint", "make_ca"]

KeyType = Literal["ec", "rsa"]
"""The kind of private key to generate."""

KeyFormat = Literal["pkcs8", "traditional"]
"""How to write a private key: PKCS#8, or PKCS#1 (RSA) / SEC1 (EC)."""

_PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_DEFAULT_HOSTS: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")


def fingerprint(certificate: x509.Certificate) -> str:
    """Return the SHA-256 fingerprint of a certificate as lower-case hex.

    Args:
        certificate: The certificate to fingerprint.

    Returns:
        The hex digest of the certificate's DER encoding.
    """
    return certificate.fingerprint(hashes.SHA256()).hex()


@attrs.frozen
class IssuedCert:
    """A server certificate written to disk the way acme.sh writes one.

    Attributes:
        fullchain_path: PEM file with the server certificate followed by the intermediate.
        key_path: PEM file with the server's private key.
        ca_path: PEM file with the root certificate, for clients to trust.
        certificate: The server certificate.
        private_key: The server's private key.
        serial: The server certificate's serial number.
        fingerprint: SHA-256 fingerprint (lower-case hex) of the server certificate.
    """

    fullchain_path: str
    key_path: str
    ca_path: str
    certificate: x509.Certificate
    private_key: _PrivateKey
    serial: int
    fingerprint: str


@attrs.frozen
class CA:
    """A root authority and the intermediate that signs server certificates.

    Attributes:
        ca_path: PEM file holding the root certificate.
        root: The self-signed root certificate.
        intermediate: The intermediate certificate, signed by the root.
        intermediate_key: The intermediate's private key.
    """

    ca_path: str
    root: x509.Certificate
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey

    def issue(
        self,
        directory: str,
        name: str,
        hosts: Sequence[str] = _DEFAULT_HOSTS,
        key_type: KeyType = "ec",
        not_after: datetime | None = None,
        key_format: KeyFormat = "pkcs8",
    ) -> IssuedCert:
        """Sign a server certificate and write its full chain and key into ``directory``.

        Args:
            directory: Where to write ``<name>.fullchain.cer`` and ``<name>.key``; created
                if missing.
            name: File name stem and the certificate's common name.
            hosts: Subject alternative names; IP addresses become IP entries, anything else
                a DNS entry.
            key_type: ``"ec"`` for P-256 or ``"rsa"`` for 2048-bit RSA.
            not_after: End of validity (timezone-aware); 90 days from now when omitted.
                A time in the past gives an already expired certificate.
            key_format: ``"pkcs8"`` (``BEGIN PRIVATE KEY``) or ``"traditional"``
                (``BEGIN RSA PRIVATE KEY`` / ``BEGIN EC PRIVATE KEY``).

        Returns:
            The paths written and the certificate's identity.
        """
        os.makedirs(directory, exist_ok=True)
        now = datetime.now(timezone.utc)
        if not_after is None:
            not_after = now + timedelta(days=90)
        not_before = min(now - timedelta(hours=1), not_after - timedelta(days=1))
        key = _generate_key(key_type)
        alternative_names: list[x509.GeneralName] = []
        for host in hosts:
            try:
                alternative_names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                alternative_names.append(x509.DNSName(host))
        usage_encipherment = key_type == "rsa"
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=usage_encipherment,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
        )
        certificate = builder.sign(self.intermediate_key, hashes.SHA256())
        fullchain_path = os.path.join(directory, f"{name}.fullchain.cer")
        key_path = os.path.join(directory, f"{name}.key")
        with open(fullchain_path, "wb") as chain_file:
            chain_file.write(certificate.public_bytes(serialization.Encoding.PEM))
            chain_file.write(b"\n")
            chain_file.write(self.intermediate.public_bytes(serialization.Encoding.PEM))
        private_format = (
            serialization.PrivateFormat.PKCS8
            if key_format == "pkcs8"
            else serialization.PrivateFormat.TraditionalOpenSSL
        )
        with open(key_path, "wb") as key_file:
            key_file.write(
                key.private_bytes(
                    serialization.Encoding.PEM, private_format, serialization.NoEncryption()
                )
            )
        return IssuedCert(
            fullchain_path=fullchain_path,
            key_path=key_path,
            ca_path=self.ca_path,
            certificate=certificate,
            private_key=key,
            serial=certificate.serial_number,
            fingerprint=fingerprint(certificate),
        )


def make_ca(directory: str) -> CA:
    """Create a root and an intermediate authority and write the root to ``ca.pem``.

    Args:
        directory: Where to write ``ca.pem``; created if missing.

    Returns:
        The authority, ready to issue server certificates.
    """
    os.makedirs(directory, exist_ok=True)
    now = datetime.now(timezone.utc)
    root_key = ec.generate_private_key(ec.SECP256R1())
    root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runnergw test root")])
    root = _authority_builder(
        root_name, root_name, root_key, root_key, path_length=1, now=now
    ).sign(root_key, hashes.SHA256())
    intermediate_key = ec.generate_private_key(ec.SECP256R1())
    intermediate_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "runnergw test intermediate")]
    )
    intermediate = _authority_builder(
        intermediate_name, root_name, intermediate_key, root_key, path_length=0, now=now
    ).sign(root_key, hashes.SHA256())
    ca_path = os.path.join(directory, "ca.pem")
    with open(ca_path, "wb") as ca_file:
        ca_file.write(root.public_bytes(serialization.Encoding.PEM))
    return CA(
        ca_path=ca_path,
        root=root,
        intermediate=intermediate,
        intermediate_key=intermediate_key,
    )


def _authority_builder(
    subject: x509.Name,
    issuer: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    path_length: int,
    now: datetime,
) -> x509.CertificateBuilder:
    """Prepare a certificate-authority certificate, ready to be signed by ``issuer_key``."""
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(hours=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=path_length), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    )


def _generate_key(key_type: KeyType) -> _PrivateKey:
    """Generate a P-256 or 2048-bit RSA private key."""
    if key_type == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ec.generate_private_key(ec.SECP256R1())
