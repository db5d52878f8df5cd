"""A real ``twistd runnergw`` with ``server.workers: 2`` whose supervisor is killed with -9:
its workers drain and end, and the next gateway's supervisor removes the private directory
the killed one left behind."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from twisted.trial.unittest import TestCase

from runnergw.workers.run_dir import PREFIX
from tests.helpers.gateway import start_fake_ollama
from tests.helpers.job_control import process_gone
from tests.helpers.workers_twistd import start_twistd

__all__ = ["KilledSupervisorTests"]


class KilledSupervisorTests(TestCase):
    """What a supervisor killed with -9 leaves, and who cleans it."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        _, port = start_fake_ollama(self)
        self.document: dict[str, Any] = {
            "runners": [{"host": f"127.0.0.1:{port}", "path": "/ollama", "filters": ["audit"]}],
            "server": {"address": "127.0.0.1:0", "workers": 2},
            "audit": {"path": ""},
            "metrics": {"address": "127.0.0.1:0"},
            "shutdown": {"readinessDelay": 0, "grace": "5s"},
        }
        # The gateways' temporary directory: one of this test alone (and a short path).
        self.temporary = tempfile.mkdtemp(prefix="tmp-")
        self.addCleanup(shutil.rmtree, self.temporary, True)
        previous = os.environ.get("TMPDIR")
        os.environ["TMPDIR"] = self.temporary
        self.addCleanup(self._restore, previous)

    @staticmethod
    def _restore(previous: str | None) -> None:
        if previous is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = previous

    def run_dirs(self) -> list[str]:
        return sorted(name for name in os.listdir(self.temporary) if name.startswith(PREFIX))

    async def test_stale_run_dir_removed_by_next_start(self) -> None:
        """After ``kill -9`` of the supervisor its directory stays while its workers drain;
        once they ended, the next gateway's start removes it (and logs it)."""
        first, manager = start_twistd(self, self.directory, self.document)
        await manager.next_starting("READY=1")
        [left] = self.run_dirs()
        workers = [e["pid"] for e in first.events_named("worker_started")]
        first.transport.signalProcess("KILL")  # type: ignore[union-attr]
        await first.ended
        for pid in workers:
            await process_gone(pid, timeout=20)
        self.assertEqual(self.run_dirs(), [left])
        second, manager = start_twistd(self, self.directory, self.document)
        await manager.next_starting("READY=1")
        [removed] = second.events_named("stale_run_dir_removed")
        self.assertEqual(removed["path"], os.path.join(self.temporary, left))
        self.assertNotIn(left, self.run_dirs())
        self.assertEqual(len(self.run_dirs()), 1)
