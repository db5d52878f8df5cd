"""The ``redis`` section: where Redis is, its password, TLS, database and key prefix."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.redis import RedisSettings
from tests.helpers.settings_text import read_text

__all__ = ["RedisSettingsTests"]


class RedisSettingsTests(SynchronousTestCase):
    """Values, defaults and located errors; the password is never shown."""

    def read(self, text: str) -> tuple[RedisSettings, list[str]]:
        return read_text(self, "redis:\n" + text,
                         lambda root: RedisSettings.from_yaml(root.section("redis")))

    def test_defaults(self) -> None:
        """Without the section: 127.0.0.1:6379, database 0, prefix ``runnergw:``."""
        settings, errors = self.read("")
        self.assertEqual((settings.describe(), settings.database, settings.key_prefix,
                          settings.password(), errors),
                         ("127.0.0.1:6379", 0, "runnergw:", None, []))

    def test_unix_socket(self) -> None:
        """``unixSocket`` replaces the address."""
        settings, errors = self.read("  unixSocket: /run/redis/redis.sock\n")
        self.assertEqual((settings.describe(), errors), ("unix:/run/redis/redis.sock", []))

    def test_address_and_socket(self) -> None:
        """Both an address and a socket: an error naming the setting."""
        _, errors = self.read("  address: 10.0.0.5:6379\n  unixSocket: /tmp/r.sock\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:3: redis.unixSocket: "), error)

    def test_password_file(self) -> None:
        """The password is the file's first line; the settings never hold it."""
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as stream:
            stream.write("hunter2-word\n")
        settings, errors = self.read(f"  passwordFile: {path}\n")
        self.assertEqual((settings.password(), errors), ("hunter2-word", []))
        self.assertNotIn("hunter2-word", repr(settings))

    def test_unreadable_password_file(self) -> None:
        """A password file that cannot be read is an error at load time."""
        _, errors = self.read("  passwordFile: /nonexistent/redis-password\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:2: redis.passwordFile: cannot read"),
                        error)

    def test_password_environment_missing(self) -> None:
        """A ``passwordEnv`` naming an unset variable is an error naming the variable only."""
        os.environ.pop("NO_SUCH_REDIS_PASSWORD", None)
        _, errors = self.read("  passwordEnv: NO_SUCH_REDIS_PASSWORD\n")
        [error] = errors
        self.assertIn("NO_SUCH_REDIS_PASSWORD", error)

    def test_tls_needs_ca(self) -> None:
        """A ``tls`` section without ``caPath`` is an error."""
        _, errors = self.read("  tls: {}\n")
        [error] = errors
        self.assertIn("redis.tls.caPath", error)

    def test_database_bounds(self) -> None:
        """A database number beyond 15 is an error."""
        _, errors = self.read("  database: 16\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:2: redis.database: "), error)
