"""The ``logging`` section: how much the gateway logs."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.logging import LOG_LEVELS, LoggingSettings
from tests.helpers.settings_text import read_text

__all__ = ["LoggingSettingsTests"]


class LoggingSettingsTests(SynchronousTestCase):
    """``logging.level``."""

    def read(self, text: str) -> tuple[LoggingSettings, list[str]]:
        return read_text(self, text,
                         lambda root: LoggingSettings.from_yaml(root.section("logging")))

    def test_info_by_default(self) -> None:
        """Without the section the gateway logs at info."""
        self.assertEqual(self.read(""), (LoggingSettings(level="info"), []))

    def test_each_level(self) -> None:
        """runner-gateway's levels, and ``warning``, in any case, read in lower case."""
        for written, level in (*((name, name) for name in LOG_LEVELS), ("WARNING", "warning"),
                               ("Debug", "debug")):
            with self.subTest(level=written):
                self.assertEqual(self.read(f"logging:\n  level: {written}\n"),
                                 (LoggingSettings(level=level), []))

    def test_unknown_level_located(self) -> None:
        """Another level is refused with the ones there are; info stays."""
        settings, errors = self.read("logging:\n  level: verbose\n")
        self.assertEqual(settings.level, "info")
        self.assertEqual(errors, ['settings.yaml:2: logging.level: expected one of trace, '
                                  'debug, info, warn, error, warning; got "verbose"'])

    def test_unknown_key(self) -> None:
        """Only ``level`` is a logging setting (JSON output is twistd's ``--logger``)."""
        _, errors = self.read("logging:\n  format: json\n")
        self.assertEqual(len(errors), 1)
        self.assertIn("settings.yaml:2: logging.format: unknown setting", errors[0])
