"""``python -m runnergw.worker`` as a supervisor starts it: a worker that cannot start says
why on standard error and exits 78, which its supervisor reports."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from runnergw.exit_status import FAILED_AT_START

__all__ = ["WorkerEntryTests"]


class _Worker(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[int] = Deferred()
        self.errors = b""

    def errReceived(self, data: bytes) -> None:
        self.errors += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if reason.check(ProcessDone, ProcessTerminated) else -1
        self.ended.callback(code)


class WorkerEntryTests(TestCase):
    """The worker's entry point."""

    timeout = 30

    async def test_bad_settings(self) -> None:
        """Settings the worker cannot load: the problem on standard error, status 78."""
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        config = directory / "settings.yaml"
        config.write_text("server:\n  workers: 2\n  adress: x\nrunners:\n  - host: a:1\n")
        worker = _Worker()
        reactor.spawnProcess(worker, sys.executable,
                             [sys.executable, "-m", "runnergw.worker", "--config", str(config),
                              "--index", "1", "--run-dir", str(directory)],
                             env=None, path=str(directory))
        self.assertEqual(await worker.ended, FAILED_AT_START)
        self.assertIn(b"server.adress: unknown setting", worker.errors)
