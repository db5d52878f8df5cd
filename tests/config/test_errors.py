"""Configuration errors as an operator reads them: file, line, YAML path, message; every
problem listed at once."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.errors import ConfigError, ConfigErrors, Origin

__all__ = ["ConfigErrorTests", "OriginTests"]


class OriginTests(SynchronousTestCase):
    """Where a setting came from."""

    def test_file_line_and_column(self) -> None:
        """A file with a line (and a column, for a model descriptor's value) reads like a
        compiler's message."""
        self.assertEqual(Origin("settings.yaml", 3).describe(), "settings.yaml:3")
        self.assertEqual(Origin("models/a.json", 2, 14).describe(), "models/a.json:2:14")

    def test_source_alone(self) -> None:
        """An environment variable (or a file without a line) is named as it is."""
        self.assertEqual(Origin("environment variable SERVER_ID").describe(),
                         "environment variable SERVER_ID")
        self.assertEqual(Origin("settings.yaml", None, 5).describe(), "settings.yaml")


class ConfigErrorTests(SynchronousTestCase):
    """One problem, and all of them."""

    def test_located_problem(self) -> None:
        """``file:line: path: message``; without a path, ``file:line: message``."""
        origin = Origin("settings.yaml", 7)
        self.assertEqual(str(ConfigError(origin, "runners[0].host", "required")),
                         "settings.yaml:7: runners[0].host: required")
        self.assertEqual(str(ConfigError(origin, "", "invalid YAML")),
                         "settings.yaml:7: invalid YAML")
        error = ConfigError(origin, "server", "x")
        self.assertEqual((error.origin, error.path, error.message), (origin, "server", "x"))

    def test_every_problem_listed(self) -> None:
        """The count, then each problem on its own indented line, in the order found."""
        errors = ConfigErrors([ConfigError(Origin("a.yaml", 1), "server", "one"),
                               ConfigError(Origin("a.yaml", 9), "audit.path", "two")])
        self.assertEqual(str(errors), "2 configuration problems:\n"
                                      "  a.yaml:1: server: one\n"
                                      "  a.yaml:9: audit.path: two")
        self.assertEqual([e.message for e in errors.errors], ["one", "two"])

    def test_one_problem(self) -> None:
        """A single problem says so in the singular."""
        errors = ConfigErrors(iter([ConfigError(Origin("a.yaml"), "", "cannot read")]))
        self.assertEqual(str(errors), "1 configuration problem:\n  a.yaml: cannot read")
        self.assertIsInstance(errors.errors, tuple)
