"""TLS for the gateway's listening socket, with certificates that reload on SIGHUP.

The certificate chain and key files are read and checked by
:mod:`runnergw.tls.certificate_files`.  acme.sh renews certificates every 60 days; the
operator then sends SIGHUP: the gateway loads the files into a new
:class:`ReloadableServerTLS` and, when the whole reload is good, the listener's one takes it
over (:meth:`ReloadableServerTLS.serve_as`).

Use it as::

    TLSMemoryBIOFactory(ReloadableServerTLS(certificate_path, key_path), False, factory)

listened on with a plain ``TCP4ServerEndpoint`` or ``TCP6ServerEndpoint``.  The TLS factory
asks :meth:`ReloadableServerTLS.serverConnectionForTLS` for an ``OpenSSL.SSL.Connection``
once per accepted TCP connection, so a certificate taken over is served to connections
accepted afterwards while connections already open keep the one they started with.

Each load builds the server's TLS settings (versions, ciphers, ALPN) as
:mod:`runnergw.tls.options` describes.

Expiry is reported, not enforced: :class:`ReloadableServerTLS` logs a warning when the server
certificate has expired or expires within 14 days, and
:func:`runnergw.tls.certificate_files.certificate_not_after` gives the date to anyone else
who wants to check (a configuration check command, a status page).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, ClassVar

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.logger import Logger
from zope.interface import implementer

from runnergw.logs import level_gate
from runnergw.tls.options import LoadedServerTLS, load_server_tls

if TYPE_CHECKING:
    from twisted.protocols.tls import TLSMemoryBIOProtocol

__all__ = ["ReloadableServerTLS"]


@implementer(IOpenSSLServerConnectionCreator)
class ReloadableServerTLS:
    """Server TLS connection creator whose certificate can be replaced while serving.

    Pass it to ``TLSMemoryBIOFactory(creator, False, factory)``.  Each new TCP connection
    gets an OpenSSL connection from the certificate loaded most recently; connections
    already open keep the certificate they were accepted with.

    Loading logs the certificate's names, serial and not-after date (never key material),
    and warns when the certificate has expired, expires within :attr:`expiry_warning`, or
    comes without the intermediates clients need.

    Attributes:
        certificate_path: PEM chain file read on every load.
        key_path: PEM private key file read on every load.
        expiry_warning: How close to expiry a certificate draws a warning.
    """

    log: ClassVar[Logger] = Logger(observer=level_gate)
    expiry_warning: ClassVar[timedelta] = timedelta(days=14)

    def __init__(self, certificate_path: str, key_path: str) -> None:
        """Load the certificate chain and key.

        Args:
            certificate_path: PEM file with the server certificate first, then
                intermediates.
            key_path: PEM file with the unencrypted RSA or EC private key.

        Raises:
            TLSConfigError: The files cannot be served; see
                :func:`runnergw.tls.options.load_certificate_options`.
        """
        self.certificate_path = certificate_path
        self.key_path = key_path
        self._current = load_server_tls(certificate_path, key_path)
        self.log.info(
            "Loaded TLS certificate {certificate_path} for {names}"
            " (serial {serial}), valid until {not_after}",
            **self._describe(self._current),
        )
        self._warn_about(self._current)

    @property
    def not_after(self) -> datetime:
        """The not-after time (UTC) of the certificate new connections get."""
        return self._current.leaf.not_valid_after_utc

    def serverConnectionForTLS(self, tls_protocol: TLSMemoryBIOProtocol) -> SSL.Connection:
        """Make the OpenSSL connection for a newly accepted TCP connection.

        ``TLSMemoryBIOFactory`` calls this once per connection, when the TCP connection is
        made, and then puts the connection in accept state itself.

        Args:
            tls_protocol: The TLS protocol the connection is for.

        Returns:
            A connection using the certificate loaded most recently.
        """
        return SSL.Connection(self._current.context, None)

    def serve_as(self, other: ReloadableServerTLS) -> None:
        """Serve what ``other`` loaded to new connections, and take its files as ours.

        A reload loads the files again into a new object (which raises ``TLSConfigError``
        when they cannot be served: nothing has changed then) and, once the rest of the
        settings is good too, the listener's creator takes it over. Connections already
        open are not affected."""
        self.certificate_path = other.certificate_path
        self.key_path = other.key_path
        self._current = other._current

    def _describe(self, loaded: LoadedServerTLS) -> dict[str, str]:
        """Return the log fields that identify a loaded certificate."""
        return {
            "certificate_path": self.certificate_path,
            "names": _certificate_names(loaded.leaf),
            "serial": format(loaded.leaf.serial_number, "x"),
            "not_after": loaded.leaf.not_valid_after_utc.isoformat(),
        }

    def _warn_about(self, loaded: LoadedServerTLS) -> None:
        """Log warnings about expiry and a missing chain for a freshly loaded certificate."""
        leaf = loaded.leaf
        not_after = leaf.not_valid_after_utc
        remaining = not_after - datetime.now(timezone.utc)
        if remaining <= timedelta(0):
            self.log.warn(
                "TLS certificate {certificate_path} expired at {not_after};"
                " clients will refuse it. Renew it and send SIGHUP.",
                certificate_path=self.certificate_path,
                not_after=not_after.isoformat(),
            )
        elif remaining < self.expiry_warning:
            self.log.warn(
                "TLS certificate {certificate_path} expires at {not_after},"
                " in {days_left} days. Renew it and send SIGHUP.",
                certificate_path=self.certificate_path,
                not_after=not_after.isoformat(),
                days_left=remaining.days,
            )
        if loaded.intermediates == 0 and leaf.issuer != leaf.subject:
            self.log.warn(
                "TLS certificate file {certificate_path} holds only the server certificate,"
                " without intermediates; many clients will fail to verify it. Use the full"
                " chain file (acme.sh: fullchain.cer).",
                certificate_path=self.certificate_path,
            )


def _certificate_names(certificate: x509.Certificate) -> str:
    """Return the names a certificate is for: its alternative names, else its subject."""
    try:
        alternative = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        names: list[str] = []
    else:
        names = [str(name) for name in alternative.get_values_for_type(x509.DNSName)]
        names += [str(address) for address in alternative.get_values_for_type(x509.IPAddress)]
    if names:
        return ", ".join(names)
    common_names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if common_names:
        return str(common_names[0].value)
    return certificate.subject.rfc4514_string() or "(no subject)"
