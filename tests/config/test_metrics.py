"""The ``metrics`` section: where the metrics and health answers are served, or not at all."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.metrics import DEFAULT_METRICS_ADDRESS, MetricsSettings
from runnergw.config.reader import ListenAddress
from tests.helpers.settings_text import read_text

__all__ = ["MetricsSettingsTests"]


class MetricsSettingsTests(SynchronousTestCase):
    """``metrics.address``: loopback 9464 by default, off on request, checked where written."""

    def read(self, text: str) -> tuple[MetricsSettings, list[str]]:
        return read_text(self, "metrics:\n" + text,
                         lambda root: MetricsSettings.from_yaml(root.section("metrics")))

    def test_default_is_loopback(self) -> None:
        """Without the section, the metrics are served on 127.0.0.1:9464 only."""
        settings, errors = self.read("")
        self.assertEqual(errors, [])
        self.assertEqual(settings.address, ListenAddress("127.0.0.1", 9464))
        self.assertEqual(settings.address, DEFAULT_METRICS_ADDRESS)
        self.assertTrue(settings.enabled)
        self.assertIsNone(settings.exposure_warning())

    def test_address(self) -> None:
        """An address of the operator's choice, port 0 included (a free port)."""
        for written, address in (("127.0.0.1:0", ListenAddress("127.0.0.1", 0)),
                                 ("'[::1]:9100'", ListenAddress("::1", 9100))):
            with self.subTest(address=written):
                settings, errors = self.read(f"  address: {written}\n")
                self.assertEqual((settings.address, errors), (address, []))

    def test_off(self) -> None:
        """``""``, ``off`` (which YAML reads as false) and ``"off"`` turn the listener off."""
        for written in ('""', "off", '"off"', "'OFF'", "false"):
            with self.subTest(address=written):
                settings, errors = self.read(f"  address: {written}\n")
                self.assertEqual(errors, [])
                self.assertIsNone(settings.address)
                self.assertFalse(settings.enabled)
                self.assertIsNone(settings.exposure_warning())

    def test_bad_address_located(self) -> None:
        """A value that is no address is reported with its file, line and YAML path."""
        for written, message in (
                ("9464", 'expected "host:port", "" or off, got 9464'),
                ("'[::1:9464'", 'expected "host:port" or ":port", got "[::1:9464"'),
                ("'::1:9464'", 'IPv6 addresses need brackets, as in "[::1]:8443"')):
            with self.subTest(address=written):
                settings, errors = self.read(f"  address: {written}\n")
                self.assertEqual(settings.address, DEFAULT_METRICS_ADDRESS)
                self.assertEqual(errors, [f"settings.yaml:2: metrics.address: {message}"])

    def test_unknown_key_located(self) -> None:
        """A misspelt key is an error, not silently ignored."""
        _, errors = self.read("  adress: 127.0.0.1:9464\n")
        self.assertEqual(errors, ["settings.yaml:2: metrics.adress: unknown setting (check "
                                  "the spelling; see the settings reference)"])

    def test_exposed_address_warned(self) -> None:
        """An address other machines reach is allowed, with a warning naming it: the pages
        answer without a token."""
        for written in (":9464", "0.0.0.0:9464", "192.0.2.7:9464"):
            with self.subTest(address=written):
                settings, errors = self.read(f"  address: '{written}'\n")
                self.assertEqual(errors, [])
                warning = settings.exposure_warning()
                assert warning is not None
                self.assertIn(f"metrics.address {settings.address} is not a loopback address",
                              warning)
                self.assertIn("without a token", warning)
