"""The distribution ships every package of the source tree."""

from __future__ import annotations

import configparser
from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

_ROOT = Path(__file__).resolve().parents[1]


class PackagingTests(SynchronousTestCase):
    """A normal (non-editable) install must not miss a package."""

    def test_every_package_listed(self) -> None:
        """setup.cfg lists exactly the runnergw packages present, and twisted.plugins."""
        config = configparser.ConfigParser()
        config.read(_ROOT / "setup.cfg")
        listed = {name.strip() for name in config["options"]["packages"].split() if name.strip()}
        present = {
            ".".join(path.parent.relative_to(_ROOT).parts)
            for path in (_ROOT / "runnergw").rglob("__init__.py")
        }
        self.assertEqual(listed - {"twisted.plugins"}, present)
        self.assertIn("twisted.plugins", listed)
        self.assertTrue((_ROOT / "twisted" / "plugins" / "runnergw_plugin.py").exists())
        self.assertFalse((_ROOT / "twisted" / "__init__.py").exists())
