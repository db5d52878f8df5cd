"""The whole settings tree: every section read, something to serve, nothing unknown."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.settings import Settings
from tests.helpers.settings_text import read_text

__all__ = ["SettingsTests"]

_RUNNER = "runners:\n  - host: 127.0.0.1:11434\n"


class SettingsTests(SynchronousTestCase):
    """``Settings.from_yaml``."""

    def read(self, text: str, files: tuple[str, ...] | None = None,
             ) -> tuple[Settings, list[str]]:
        """Read ``text`` as read from ``files`` (by default, the file it was written to)."""
        return read_text(self, text, lambda root: Settings.from_yaml(
            root, files if files is not None else (root.origin.source,)))

    def test_every_section(self) -> None:
        """Each section lands in its own settings; absent ones take their defaults."""
        settings, errors = self.read(_RUNNER + "logging:\n  level: debug\n"
                                     "audit:\n  path: ''\nserver:\n  address: 127.0.0.1:1\n")
        self.assertEqual(errors, [])
        self.assertEqual((settings.logging.level, settings.audit.path,
                          settings.server.address.port, len(settings.runners)),
                         ("debug", "", 1, 1))
        self.assertEqual(settings.paseto.versions, ("v4",))
        self.assertFalse(settings.pipelines.enabled)

    def test_nothing_to_serve(self) -> None:
        """Neither a runner nor pipelines: refused, pointing at ``runners``."""
        _, errors = self.read("logging:\n  level: info\n")
        self.assertEqual(errors, ["settings.yaml:1: runners: nothing to serve: add a runner "
                                  "or a pipelines section"])

    def test_pipelines_alone_serve(self) -> None:
        """A node serving only pipelines needs no runner."""
        settings, errors = self.read("pipelines:\n  serverId: base64:x\n")
        self.assertEqual(errors, [])
        self.assertTrue(settings.pipelines.enabled)
        self.assertEqual(settings.runners, ())

    def test_unknown_section(self) -> None:
        """A misspelt section is an error, not a section silently ignored."""
        _, errors = self.read(_RUNNER + "sever:\n  address: :8443\n")
        self.assertEqual(errors, ["settings.yaml:3: sever: unknown setting (check the "
                                  "spelling; see the settings reference)"])

    def test_problems_of_every_section_at_once(self) -> None:
        """A problem in each section is reported in one go, in section order."""
        _, errors = self.read("logging:\n  level: loud\npaseto:\n  version: v9\n"
                              "runners:\n  - host: x\nserver:\n  address: x\n"
                              "audit:\n  path: 1\n")
        self.assertEqual([error.split(": ")[1] for error in errors],
                         ["logging.level", "paseto.version", "runners[0].host",
                          "server.address", "audit.path"])

    def test_files_kept(self) -> None:
        """The files read are kept, base first; the base is the one commands name."""
        settings, _ = self.read(_RUNNER, files=("base.yaml", "prod.yaml"))
        self.assertEqual(settings.files, ("base.yaml", "prod.yaml"))
        self.assertEqual(settings.config_path, "base.yaml")

    def test_pipelines_only_from_a_file(self) -> None:
        """A pipelines section whose origin is no settings file (an environment override
        made it) does not turn pipelines on."""
        settings, errors = self.read(_RUNNER + "pipelines:\n  serverId: x\n",
                                     files=("other.yaml",))
        self.assertFalse(settings.pipelines.enabled)
        self.assertEqual(errors, [])
