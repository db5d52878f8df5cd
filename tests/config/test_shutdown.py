"""The ``shutdown`` section: the readiness delay and the grace of a drain."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.load import load_settings
from runnergw.config.shutdown import ShutdownSettings
from tests.helpers.settings_text import read_text

__all__ = ["ShutdownSettingsTests"]


class ShutdownSettingsTests(SynchronousTestCase):
    """Durations, their defaults and their errors."""

    def read(self, text: str) -> tuple[ShutdownSettings, list[str]]:
        return read_text(self, "shutdown:\n" + text,
                         lambda root: ShutdownSettings.from_yaml(root.section("shutdown")))

    def test_defaults(self) -> None:
        """Without the section: 5 s of serving while not ready, then 30 s of grace."""
        settings, errors = self.read("")
        self.assertEqual((settings.readiness_delay, settings.grace, errors), (5.0, 30.0, []))

    def test_go_durations_and_seconds(self) -> None:
        """Both keys take a Go duration or a number of seconds; 0 is allowed."""
        settings, errors = self.read("  readinessDelay: 0\n  grace: 2m\n")
        self.assertEqual((settings.readiness_delay, settings.grace, errors), (0.0, 120.0, []))

    def test_bad_values_located(self) -> None:
        """A value that is no duration is named with its file, line and path."""
        _, errors = self.read("  readinessDelay: soon\n  grace: -1\n")
        self.assertEqual(len(errors), 2, errors)
        self.assertTrue(errors[0].startswith("settings.yaml:2: shutdown.readinessDelay: "),
                        errors)
        self.assertTrue(errors[1].startswith("settings.yaml:3: shutdown.grace: "), errors)

    def test_unknown_key(self) -> None:
        """A misspelt key is an error, not silently a default."""
        _, errors = self.read("  gracePeriod: 10s\n")
        [error] = errors
        self.assertTrue(error.startswith("settings.yaml:2: shutdown.gracePeriod: unknown "
                                         "setting"), error)

    def test_part_of_the_settings(self) -> None:
        """A settings file's shutdown section reaches the loaded settings."""
        path = Path(self.mktemp())
        path.write_text("runners:\n  - host: 127.0.0.1:11434\n    path: /\n"
                        "shutdown:\n  grace: 45s\n")
        self.assertEqual(load_settings(str(path), {}).shutdown, ShutdownSettings(5.0, 45.0))
