"""``twistd runnergw``: which settings file it reads, a bad file stopping it with the file,
line and path, and the service it builds. (``tests/test_twistd.py`` runs the real twistd.)"""

from __future__ import annotations

import gc
import os
from pathlib import Path

import yaml
from twisted.logger import LogLevel
from twisted.python.usage import UsageError
from twisted.trial.unittest import SynchronousTestCase

from runnergw.logs import level_gate
from runnergw.service import GatewayService
from runnergw.tap import Options, makeService
from runnergw.tokens.key_generation import write_signing_keypair

__all__ = ["MakeServiceTests", "OptionsTests"]

_VARIABLES = ("RUNNERGW_CONFIG", "GO_ENV", "RUNNERGW_ENV")


class _TapTestCase(SynchronousTestCase):
    """A settings directory, and an environment without settings variables."""

    def setUp(self) -> None:
        for name in _VARIABLES:
            self.setenv(name, None)
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir()

    def setenv(self, name: str, value: str | None) -> None:
        """Set (or remove) an environment variable for this test only."""
        previous = os.environ.get(name)

        def restore() -> None:
            if previous is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = previous

        self.addCleanup(restore)
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value

    def write(self, name: str = "settings.yaml", level: str = "info",
              public_path: str | None = None) -> str:
        """A good settings file: one runner, keys that exist, no audit trail."""
        key, pub = self.directory / f"{name}.key", self.directory / f"{name}.pub"
        if not key.exists():
            write_signing_keypair(key, pub)
        path = self.directory / name
        path.write_text(yaml.safe_dump({
            "logging": {"level": level},
            "paseto": {"keyPath": str(key), "publicPath": public_path or str(pub)},
            "runners": [{"host": "127.0.0.1:11434", "path": "/"}],
            "server": {"address": "127.0.0.1:0"},
            "audit": {"path": ""},
        }))
        return str(path)

    def parse(self, *argv: str) -> Options:
        options = Options()
        options.parseOptions(list(argv))
        return options


class OptionsTests(_TapTestCase):
    """``twistd runnergw [--config FILE]``."""

    def test_config_option(self) -> None:
        """``--config`` (or ``-c``) names the settings file, loaded before anything starts."""
        path = self.write()
        for flag in ("--config", "-c"):
            with self.subTest(flag=flag):
                options = self.parse(flag, path)
                self.assertEqual(options.settings.config_path, path)
                self.assertEqual(len(options.settings.runners), 1)

    def test_environment_names_the_file(self) -> None:
        """Without ``--config``, ``RUNNERGW_CONFIG`` names the file; ``--config`` wins over
        it."""
        from_environment, from_option = self.write("env.yaml"), self.write("option.yaml")
        self.setenv("RUNNERGW_CONFIG", from_environment)
        self.assertEqual(self.parse().settings.config_path, from_environment)
        self.assertEqual(self.parse("--config", from_option).settings.config_path,
                         from_option)

    def test_broken_file_names_file_line_and_path(self) -> None:
        """A typo stops twistd with a usage error naming file, line and YAML path."""
        path = self.directory / "settings.yaml"
        path.write_text("runners:\n  - host: 127.0.0.1:11434\n    pth: /\n")
        error = self.assertRaises(UsageError, self.parse, "--config", str(path))
        self.assertIn(f"{path}:3: runners[0].pth: unknown setting", str(error))

    def test_missing_file(self) -> None:
        """A settings file that is not there is a usage error naming it."""
        path = str(self.directory / "nowhere.yaml")
        error = self.assertRaises(UsageError, self.parse, "--config", path)
        self.assertIn(f"{path}: cannot read settings file", str(error))


class MakeServiceTests(_TapTestCase):
    """``makeService``: the gateway service, built but not started."""

    def setUp(self) -> None:
        super().setUp()
        self.patch(level_gate, "level", level_gate.level)
        self.addCleanup(gc.unfreeze)

    def test_builds_the_gateway_service(self) -> None:
        """The service is a ``GatewayService`` over the loaded settings, and the log level
        is the settings' one."""
        options = self.parse("--config", self.write(level="warn"))
        service = makeService(options)
        self.addCleanup(service.parts.audit_log.close)  # type: ignore[attr-defined]
        self.assertIsInstance(service, GatewayService)
        self.assertIs(service.settings, options.settings)  # type: ignore[attr-defined]
        self.assertIsNone(service.port)  # type: ignore[attr-defined]
        self.assertEqual(level_gate.level, LogLevel.warn)

    def test_problems_found_while_preparing_exit(self) -> None:
        """A key file that cannot be read stops twistd with the problem, not a traceback."""
        options = self.parse("--config", self.write(
            public_path=str(self.directory / "missing.pub")))
        error = self.assertRaises(SystemExit, makeService, options)
        self.assertIn("runnergw: 1 configuration problem:", str(error))
        self.assertIn("paseto.publicPath", str(error))
        self.assertIn("missing.pub: cannot read", str(error))
