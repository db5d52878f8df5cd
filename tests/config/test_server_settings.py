"""The ``server`` section's minimum request body data rate, from YAML to the HTTP server."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.config.errors import ConfigErrors
from runnergw.config.load import load_settings
from runnergw.config.server import ServerSettings
from tests.helpers.gateway import start_gateway

__all__ = ["BodyDataRateSettingsTests", "BodyDataRateWiringTests"]

_RUNNERS = "runners:\n  - host: 127.0.0.1:11434\n    path: /ollama\n"


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


class BodyDataRateWiringTests(TestCase):
    """The settings reach the gateway's HTTP server."""

    timeout = 10

    def test_server_uses_the_settings(self) -> None:
        """A started gateway enforces the configured rate and grace."""
        gateway = start_gateway(self, [{"host": "127.0.0.1:1", "path": "/a"}], tls=False,
                                server={"minRequestBodyDataRate": 1000,
                                        "minRequestBodyDataRateGrace": "12s"})
        timeouts = gateway.service.factory.timeouts
        self.assertEqual((timeouts.min_body_data_rate, timeouts.min_body_data_rate_grace),
                         (1000, 12.0))
