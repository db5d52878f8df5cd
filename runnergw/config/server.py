"""The ``server`` section: where and how the gateway listens."""

from __future__ import annotations

import attrs

from runnergw.config.reader import ListenAddress, MapReader

__all__ = ["MAX_WORKERS", "ServerSettings"]

MAX_WORKERS = 64
"""The most gateway processes ``server.workers`` may ask for."""


@attrs.frozen
class ServerSettings:
    """Listener, TLS files and the front-door limits."""

    address: ListenAddress = ListenAddress("127.0.0.1", 8443)
    certificate_path: str = ""
    key_path: str = ""
    read_timeout: float = 30.0
    """Idle timeout while reading a request body (runner-gateway's ``readTimeoutSeconds``)."""
    write_timeout: float = 30.0
    """How long a client may refuse to take response bytes (``writeTimeoutSeconds``)."""
    header_timeout: float = 10.0
    """Deadline for the whole request line and header block, however slowly it trickles in."""
    keep_alive_timeout: float = 75.0
    """How long an idle keep-alive connection stays open between requests."""
    min_body_data_rate: int = 240
    """Bytes per second a request body must average once its grace period is over
    (``minRequestBodyDataRate``, after Kestrel's MinRequestBodyDataRate); 0 disables."""
    min_body_data_rate_grace: float = 5.0
    """Reading time before that rate applies (``minRequestBodyDataRateGrace``)."""
    max_header_line: int = 8192
    """Longest request line or header field, in bytes (nginx's bound)."""
    max_header_fields: int = 100
    max_header_bytes: int = 65536
    """Largest whole header block."""
    allow_plaintext: bool = False
    """Listen on a non-loopback address without TLS (only behind another TLS terminator)."""
    server_timing: bool = True
    """Add ``Server-Timing`` (the gateway's and the runner's time) to runner answers."""
    workers: int = 1
    """Gateway processes sharing the listening socket (``runnergw.workers``); 1: this
    process serves alone."""

    @property
    def tls_enabled(self) -> bool:
        """True when both TLS files are configured."""
        return bool(self.certificate_path and self.key_path)

    def plaintext_refusal(self) -> str | None:
        """Why listening as configured would be unsafe, or None.

        Loading such settings works (runner-gateway's sample listens on ``:8443`` in plain
        HTTP); starting the listener is what is refused.
        """
        if self.tls_enabled or self.allow_plaintext or self.address.is_loopback():
            return None
        return (
            f"refusing to listen on {self.address} without TLS: set certificatePath and "
            "keyPath, listen on 127.0.0.1, or set server.allowPlaintext: true when another "
            "TLS terminator sits in front"
        )

    @classmethod
    def from_yaml(cls, section: MapReader) -> ServerSettings:
        """Read the section, recording problems in its sink."""
        defaults = cls()
        settings = cls(
            address=section.listen_address("address", defaults.address),
            certificate_path=section.string("certificatePath"),
            key_path=section.string("keyPath"),
            read_timeout=section.duration("readTimeoutSeconds", defaults.read_timeout),
            write_timeout=section.duration("writeTimeoutSeconds", defaults.write_timeout),
            header_timeout=section.duration("headerTimeout", defaults.header_timeout),
            keep_alive_timeout=section.duration("keepAliveTimeout", defaults.keep_alive_timeout),
            min_body_data_rate=section.integer("minRequestBodyDataRate",
                                               defaults.min_body_data_rate),
            min_body_data_rate_grace=section.duration("minRequestBodyDataRateGrace",
                                                      defaults.min_body_data_rate_grace),
            max_header_line=section.integer("maxHeaderLine", defaults.max_header_line, 256),
            max_header_fields=section.integer("maxHeaderFields", defaults.max_header_fields, 8),
            max_header_bytes=section.size("maxHeaderBytes", defaults.max_header_bytes),
            allow_plaintext=section.boolean("allowPlaintext", False),
            server_timing=section.boolean("serverTiming", defaults.server_timing),
            workers=section.integer("workers", defaults.workers, 1, MAX_WORKERS),
        )
        if bool(settings.certificate_path) != bool(settings.key_path):
            missing = "keyPath" if settings.certificate_path else "certificatePath"
            section.error(missing, "certificatePath and keyPath must be set together")
        for key, value in (("readTimeoutSeconds", settings.read_timeout),
                           ("writeTimeoutSeconds", settings.write_timeout),
                           ("headerTimeout", settings.header_timeout)):
            if value <= 0:
                section.error(key, "must be longer than zero")
        if settings.min_body_data_rate and settings.min_body_data_rate_grace <= 0:
            section.error("minRequestBodyDataRateGrace",
                          "must be longer than zero (minRequestBodyDataRate: 0 turns the "
                          "minimum rate off)")
        section.finish()
        return settings
