"""``server.workers``: how many gateway processes share the listening socket, and what they
cannot serve yet."""

from __future__ import annotations

from pathlib import Path

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.load import load_settings
from runnergw.config.restart_only import keep_running_values
from runnergw.config.server import ServerSettings
from tests.helpers.settings_text import load_errors, read_text

__all__ = ["WorkersCountTests", "WorkersRefusalTests", "WorkersReloadTests"]

_RUNNERS = "runners:\n  - host: 127.0.0.1:11434\n"


class WorkersCountTests(SynchronousTestCase):
    """The count itself."""

    def read(self, text: str) -> tuple[ServerSettings, list[str]]:
        return read_text(self, "server:\n" + text,
                         lambda root: ServerSettings.from_yaml(root.section("server")))

    def test_default_is_one(self) -> None:
        """Without the key the gateway is one process, as before."""
        settings, errors = self.read("  address: 127.0.0.1:8443\n")
        self.assertEqual((settings.workers, errors), (1, []))

    def test_count_read(self) -> None:
        """``workers: 16`` asks for sixteen processes."""
        settings, errors = self.read("  workers: 16\n")
        self.assertEqual((settings.workers, errors), (16, []))

    def test_zero_refused(self) -> None:
        """Zero workers would serve nothing: a located error."""
        _, errors = self.read("  workers: 0\n")
        self.assertEqual(errors, ["settings.yaml:2: server.workers: expected at least 1 and "
                                  "at most 64, got 0"])

    def test_too_many_refused(self) -> None:
        """More than 64 processes is refused."""
        _, errors = self.read("  workers: 65\n")
        self.assertEqual(errors, ["settings.yaml:2: server.workers: expected at least 1 and "
                                  "at most 64, got 65"])

    def test_not_a_number_refused(self) -> None:
        """``workers: auto`` is not a count."""
        _, errors = self.read("  workers: auto\n")
        self.assertEqual(errors, ['settings.yaml:2: server.workers: expected a whole number, '
                                  'got "auto"'])


class WorkersRefusalTests(SynchronousTestCase):
    """Settings several processes would serve wrongly are refused at load."""

    def test_roles_refused(self) -> None:
        """With roles each process would keep its own limits (a rate of N per minute would
        admit N per worker): refused, naming the setting that needs to change."""
        errors = load_errors(self, _RUNNERS + "server:\n  workers: 2\nroles:\n  user: {}\n")
        self.assertEqual(errors, ["settings.yaml:4: server.workers: roles need limits "
                                  "shared between the workers: set limits.backend: redis"])

    def test_roles_with_limits_on_redis(self) -> None:
        """With the limits kept in Redis every worker counts against the same buckets,
        slots and quotas: roles are served by several workers."""
        self.assertEqual(load_errors(self, _RUNNERS + "server:\n  workers: 2\nroles:\n  user: {}\n"
                                   "limits:\n  backend: redis\n  nodes: 2\n"), [])

    def test_roles_with_one_worker(self) -> None:
        """One worker keeps the roles as they are."""
        self.assertEqual(
            load_errors(self, _RUNNERS + "server:\n  workers: 1\nroles:\n  user: {}\n"), [])

    def test_pipelines_refused(self) -> None:
        """Pipelines keep each model's concurrency in one process (two workers would run
        two jobs of a model limited to one): refused."""
        errors = load_errors(self, _RUNNERS + "server:\n  workers: 2\npipelines:\n  serverId: x\n")
        self.assertEqual(errors, ["settings.yaml:4: server.workers: pipelines keep each "
                                  "model's concurrency and queue in one process: serve "
                                  "pipelines with workers: 1"])

    def test_runners_alone_accepted(self) -> None:
        """Runners without roles are served by several workers."""
        self.assertEqual(load_errors(self, _RUNNERS + "server:\n  workers: 4\n"), [])


class WorkersReloadTests(SynchronousTestCase):
    """A reload cannot change the number of processes."""

    def test_restart_only(self) -> None:
        """A new count keeps the running one and is named as needing a restart."""
        directory = Path(self.mktemp())
        directory.mkdir()
        path = directory / "settings.yaml"
        path.write_text(_RUNNERS + "server:\n  workers: 2\n")
        running = load_settings(str(path), environ={}, dotenv_path=None)
        path.write_text(_RUNNERS + "server:\n  workers: 3\n")
        new = load_settings(str(path), environ={}, dotenv_path=None)
        kept, changes = keep_running_values(running, new)
        self.assertEqual(kept.server.workers, 2)
        self.assertEqual([(c.path, c.running, c.wanted) for c in changes],
                         [("server.workers", "2", "3")])
