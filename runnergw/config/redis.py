"""The ``redis`` section: how the gateway reaches the Redis that shares its limits.

The password is read from a file or the environment when the gateway connects; it is never
part of the settings' text, logs or error messages.
"""

from __future__ import annotations

import os

import attrs

from runnergw.config.reader import ListenAddress, MapReader

__all__ = ["RedisSettings"]


@attrs.frozen
class RedisSettings:
    """A TCP ``address`` or a ``unix_socket``, optional password and TLS, a database and
    the prefix of every key (several clusters on one Redis)."""

    address: ListenAddress = ListenAddress("127.0.0.1", 6379)
    unix_socket: str = ""
    password_file: str = ""
    password_env: str = ""
    tls_ca_path: str = ""
    """The CA bundle checking Redis' certificate; empty: no TLS."""
    tls: bool = False
    database: int = 0
    key_prefix: str = "runnergw:"

    def password(self) -> str | None:
        """The password from its file (first line) or environment variable, if any.

        Raises:
            OSError: the file cannot be read.
        """
        if self.password_file:
            with open(self.password_file, encoding="utf-8") as stream:
                return stream.readline().rstrip("\r\n")
        if self.password_env:
            return os.environ.get(self.password_env)
        return None

    def describe(self) -> str:
        """Where Redis is, for logs."""
        return f"unix:{self.unix_socket}" if self.unix_socket else str(self.address)

    @classmethod
    def from_yaml(cls, section: MapReader) -> RedisSettings:
        """Read the section, recording problems in its sink."""
        defaults = cls()
        tls = section.section("tls")
        settings = cls(
            address=section.listen_address("address", defaults.address),
            unix_socket=section.string("unixSocket"),
            password_file=section.string("passwordFile"),
            password_env=section.string("passwordEnv"),
            tls_ca_path=tls.string("caPath"),
            tls=section.has("tls"),
            database=section.integer("database", 0, maximum=15),
            key_prefix=section.string("keyPrefix", defaults.key_prefix),
        )
        tls.finish()
        if section.has("address") and settings.unix_socket:
            section.error("unixSocket", "give either address or unixSocket, not both")
        if not settings.address.host and not settings.unix_socket:
            section.error("address", 'Redis needs a host, as in "127.0.0.1:6379"')
        if settings.password_file and settings.password_env:
            section.error("passwordEnv", "give either passwordFile or passwordEnv, not both")
        elif settings.password_file and not os.access(settings.password_file, os.R_OK):
            section.error("passwordFile", f'cannot read "{settings.password_file}"')
        elif settings.password_env and settings.password_env not in os.environ:
            section.error("passwordEnv", f"the environment has no {settings.password_env}")
        if settings.tls and not settings.tls_ca_path:
            tls.error("caPath", "TLS needs the CA bundle that signed Redis' certificate")
        elif settings.tls_ca_path and not os.access(settings.tls_ca_path, os.R_OK):
            tls.error("caPath", f'cannot read "{settings.tls_ca_path}"')
        if settings.tls and settings.unix_socket:
            section.error("tls", "TLS is for a TCP address, not a unix socket")
        section.finish()
        return settings
