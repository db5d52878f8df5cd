"""The ``server`` section: where the gateway listens, its TLS files, its timeouts and the
front door's limits."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigErrors
from runnergw.config.load import load_settings
from runnergw.config.reader import ListenAddress
from runnergw.config.server import ServerSettings
from tests.helpers.settings_text import read_text

__all__ = ["BodyDataRateSettingsTests", "ServerSettingsTests"]

_RUNNERS = "runners:\n  - host: 127.0.0.1:11434\n    path: /ollama\n"


class ServerSettingsTests(SynchronousTestCase):
    """The listener, TLS files, timeouts and header limits."""

    def read(self, text: str) -> tuple[ServerSettings, list[str]]:
        return read_text(self, "server:\n" + text,
                         lambda root: ServerSettings.from_yaml(root.section("server")))

    def test_defaults(self) -> None:
        """Without the section: loopback on 8443, no TLS, runner-gateway's timeouts."""
        settings, errors = self.read("")
        self.assertEqual(errors, [])
        self.assertEqual(settings.address, ListenAddress("127.0.0.1", 8443))
        self.assertFalse(settings.tls_enabled)
        self.assertIsNone(settings.plaintext_refusal())
        self.assertEqual((settings.read_timeout, settings.write_timeout,
                          settings.header_timeout, settings.keep_alive_timeout),
                         (30.0, 30.0, 10.0, 75.0))
        self.assertEqual((settings.max_header_line, settings.max_header_fields,
                          settings.max_header_bytes), (8192, 100, 65536))

    def test_listen_addresses(self) -> None:
        """``host:port``, ``:port`` (every interface) and ``[v6]:port``."""
        for written, address in (("127.0.0.1:9443", ListenAddress("127.0.0.1", 9443)),
                                 (":8443", ListenAddress("", 8443)),
                                 ("'[::1]:8443'", ListenAddress("::1", 8443))):
            with self.subTest(address=written):
                settings, errors = self.read(f"  address: {written}\n")
                self.assertEqual((settings.address, errors), (address, []))

    def test_bad_addresses_located(self) -> None:
        """A port alone, an IPv6 address without brackets or a number are refused."""
        for written, message in (
                ("8443", 'expected "host:port", got 8443'),
                ("'::1:8443'", 'IPv6 addresses need brackets, as in "[::1]:8443"'),
                ("'host:99999'", 'expected "host:port" or ":port", got "host:99999"')):
            with self.subTest(address=written):
                settings, errors = self.read(f"  address: {written}\n")
                self.assertEqual(settings.address, ListenAddress("127.0.0.1", 8443))
                self.assertEqual(errors, [f"settings.yaml:2: server.address: {message}"])

    def test_tls_files_go_together(self) -> None:
        """Both TLS files turn TLS on; one without the other names the missing one."""
        settings, errors = self.read("  certificatePath: c.pem\n  keyPath: k.pem\n")
        self.assertEqual((settings.tls_enabled, errors), (True, []))
        _, errors = self.read("  certificatePath: c.pem\n")
        self.assertEqual(errors, ["settings.yaml:2: server.keyPath: certificatePath and "
                                  "keyPath must be set together"])
        _, errors = self.read("  keyPath: k.pem\n")
        self.assertEqual(errors, ["settings.yaml:2: server.certificatePath: certificatePath "
                                  "and keyPath must be set together"])

    def test_plaintext_on_a_public_address(self) -> None:
        """Loading plain HTTP on every interface works (runner-gateway's sample does), but
        it is refused when listening unless ``allowPlaintext`` says a terminator is in
        front."""
        settings, errors = self.read("  address: :8443\n")
        self.assertEqual(errors, [])
        self.assertIn("refusing to listen on :8443 without TLS", settings.plaintext_refusal()
                      or "")
        settings, _ = self.read("  address: :8443\n  allowPlaintext: true\n")
        self.assertIsNone(settings.plaintext_refusal())
        settings, _ = self.read("  address: :8443\n  certificatePath: c\n  keyPath: k\n")
        self.assertIsNone(settings.plaintext_refusal())

    def test_timeouts(self) -> None:
        """runner-gateway's timeout keys take Go durations or seconds; zero is refused."""
        settings, errors = self.read("  readTimeoutSeconds: 5s\n  writeTimeoutSeconds: 90\n"
                                     "  headerTimeout: 2s\n  keepAliveTimeout: 1m\n")
        self.assertEqual(errors, [])
        self.assertEqual((settings.read_timeout, settings.write_timeout,
                          settings.header_timeout, settings.keep_alive_timeout),
                         (5.0, 90.0, 2.0, 60.0))
        _, errors = self.read("  readTimeoutSeconds: 0s\n  writeTimeoutSeconds: 0\n"
                              "  headerTimeout: 0s\n")
        self.assertEqual(errors, [
            "settings.yaml:2: server.readTimeoutSeconds: must be longer than zero",
            "settings.yaml:3: server.writeTimeoutSeconds: must be longer than zero",
            "settings.yaml:4: server.headerTimeout: must be longer than zero"])

    def test_header_limits(self) -> None:
        """Header limits have floors below which no real client gets through."""
        settings, errors = self.read("  maxHeaderLine: 16384\n  maxHeaderFields: 50\n"
                                     "  maxHeaderBytes: 128KiB\n")
        self.assertEqual(errors, [])
        self.assertEqual((settings.max_header_line, settings.max_header_fields,
                          settings.max_header_bytes), (16384, 50, 128 * 1024))
        _, errors = self.read("  maxHeaderLine: 100\n  maxHeaderFields: 2\n")
        self.assertEqual(errors, [
            "settings.yaml:2: server.maxHeaderLine: expected at least 256, got 100",
            "settings.yaml:3: server.maxHeaderFields: expected at least 8, got 2"])

    def test_server_timing(self) -> None:
        """``serverTiming`` is on unless turned off; anything but a boolean is refused."""
        self.assertTrue(self.read("")[0].server_timing)
        settings, errors = self.read("  serverTiming: false\n")
        self.assertEqual((settings.server_timing, errors), (False, []))
        _, errors = self.read("  serverTiming: sometimes\n")
        self.assertEqual(len(errors), 1)
        self.assertIn("settings.yaml:2: server.serverTiming:", errors[0])

    def test_unknown_key(self) -> None:
        """A misspelt key is an error at its line."""
        _, errors = self.read("  adress: :8443\n")
        self.assertEqual(len(errors), 1)
        self.assertIn("settings.yaml:2: server.adress: unknown setting", errors[0])


class BodyDataRateSettingsTests(SynchronousTestCase):
    """``minRequestBodyDataRate`` and ``minRequestBodyDataRateGrace``."""

    def load(self, server: str) -> ServerSettings:
        """Load a settings file whose ``server`` section holds ``server`` (indented lines)."""
        path = Path(self.mktemp())
        path.write_text(_RUNNERS + "server:\n  address: 127.0.0.1:8443\n" + server)
        return load_settings(str(path), {}).server

    def errors(self, server: str) -> str:
        """The configuration errors of such a file, one per line."""
        with self.assertRaises(ConfigErrors) as caught:
            self.load(server)
        return "\n".join(str(error) for error in caught.exception.errors)

    def test_defaults(self) -> None:
        """Without the keys, a body must average 240 bytes per second after 5 seconds."""
        settings = self.load("")
        self.assertEqual((settings.min_body_data_rate, settings.min_body_data_rate_grace),
                         (240, 5.0))

    def test_configured(self) -> None:
        """camelCase keys set the rate (bytes per second) and the grace (a Go duration)."""
        settings = self.load("  minRequestBodyDataRate: 1000\n  minRequestBodyDataRateGrace: 1m\n")
        self.assertEqual((settings.min_body_data_rate, settings.min_body_data_rate_grace),
                         (1000, 60.0))

    def test_zero_disables(self) -> None:
        """A rate of 0 turns the check off; its grace then does not matter."""
        settings = self.load("  minRequestBodyDataRate: 0\n  minRequestBodyDataRateGrace: 0\n")
        self.assertEqual(settings.min_body_data_rate, 0)

    def test_zero_grace_refused(self) -> None:
        """A grace of 0 with a rate would refuse every body at once: a configuration error."""
        errors = self.errors("  minRequestBodyDataRateGrace: 0s\n")
        self.assertIn("server.minRequestBodyDataRateGrace: must be longer than zero", errors)

    def test_bad_values(self) -> None:
        """A rate that is not a whole number, or a grace that is not a duration, is named."""
        errors = self.errors("  minRequestBodyDataRate: fast\n"
                             "  minRequestBodyDataRateGrace: soon\n")
        self.assertIn("server.minRequestBodyDataRate: expected a whole number", errors)
        self.assertIn("server.minRequestBodyDataRateGrace: expected a duration", errors)
        self.assertIn("server.minRequestBodyDataRate: expected at least 0",
                      self.errors("  minRequestBodyDataRate: -1\n"))
