"""The distribution ships every package of the source tree."""

from __future__ import annotations

import configparser
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

_ROOT = Path(__file__).resolve().parents[1]


def _packages() -> list[str]:
    """The ``packages`` setup.cfg lists."""
    config = configparser.ConfigParser()
    config.read(_ROOT / "setup.cfg")
    return config["options"]["packages"].split()


class PackagingTests(SynchronousTestCase):
    """A normal (non-editable) install must not miss a package."""

    def test_every_package_listed(self) -> None:
        """setup.cfg lists exactly the runnergw packages present, and twisted.plugins."""
        listed = {name.strip() for name in _packages() if name.strip()}
        present = {
            ".".join(path.parent.relative_to(_ROOT).parts)
            for path in (_ROOT / "runnergw").rglob("__init__.py")
        }
        self.assertEqual(listed - {"twisted.plugins"}, present)
        self.assertIn("twisted.plugins", listed)
        self.assertTrue((_ROOT / "twisted" / "plugins" / "runnergw_plugin.py").exists())
        self.assertFalse((_ROOT / "twisted" / "__init__.py").exists())

    def test_every_directory_of_modules_is_a_package(self) -> None:
        """A directory of modules without ``__init__.py`` would be missed by the check above
        and left out of a normal install."""
        directories = {path.parent for path in (_ROOT / "runnergw").rglob("*.py")}
        missing = sorted(str(d.relative_to(_ROOT)) for d in directories
                         if not (d / "__init__.py").exists())
        self.assertEqual(missing, [])
        listed = {name.strip() for name in _packages() if name.strip()}
        for package in ("runnergw.models", "runnergw.jobs", "runnergw.terminals.commands"):
            self.assertIn(package, listed)
