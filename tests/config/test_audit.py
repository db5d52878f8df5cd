"""The ``audit`` section: where the audit trail goes."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.audit import AuditSettings
from tests.helpers.settings_text import read_text

__all__ = ["AuditSettingsTests"]


class AuditSettingsTests(SynchronousTestCase):
    """``audit.path``."""

    def read(self, text: str) -> tuple[AuditSettings, list[str]]:
        return read_text(self, text, lambda root: AuditSettings.from_yaml(root.section("audit")))

    def test_stdout_by_default(self) -> None:
        """Without the section, the trail goes to standard output."""
        self.assertEqual(self.read(""), (AuditSettings(path="-"), []))
        self.assertEqual(self.read("audit: {}\n"), (AuditSettings(path="-"), []))

    def test_path(self) -> None:
        """A file, ``-`` or ``""`` (off) are taken as written."""
        for path in ("/var/log/runnergw/audit.log", "-", ""):
            with self.subTest(path=path):
                self.assertEqual(self.read(f'audit:\n  path: "{path}"\n'),
                                 (AuditSettings(path=path), []))

    def test_wrong_type_located(self) -> None:
        """A path that is not a string is refused at its line; the default stays."""
        settings, errors = self.read("audit:\n  path: false\n")
        self.assertEqual(settings.path, "-")
        self.assertEqual(errors, ["settings.yaml:2: audit.path: expected a string, got False"])

    def test_unknown_key(self) -> None:
        """A misspelt key is an error, not a silently unused setting."""
        _, errors = self.read("audit:\n  pth: x\n")
        self.assertEqual(errors, ["settings.yaml:2: audit.pth: unknown setting (check the "
                                  "spelling; see the settings reference)"])

    def test_section_must_be_a_mapping(self) -> None:
        """``audit: off`` is refused: the section holds ``path``."""
        settings, errors = self.read("audit: /var/log/audit.log\n")
        self.assertEqual(settings.path, "-")
        self.assertEqual(errors, ['settings.yaml:1: audit: expected a mapping, got '
                                  '"/var/log/audit.log"'])
