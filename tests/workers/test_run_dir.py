"""The supervisor's private directory: removed at the next start once the supervisor that
made it (killed with -9) and all its workers have ended, never before."""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.workers.run_dir import (
    LOCK_NAME,
    PREFIX,
    WORKER_LOCK_FD,
    make_run_dir,
    remove_stale_run_dirs,
)

__all__ = ["RunDirTests", "RunDirHeldByWorkerTests"]


class RunDirTests(SynchronousTestCase):
    """Which directories are proved stale."""

    def setUp(self) -> None:
        self.parent = Path(self.mktemp())
        self.parent.mkdir()

    def test_private_and_locked(self) -> None:
        """The directory is the user's alone and holds the lock file, with the pid."""
        path, fd = make_run_dir(str(self.parent))
        self.addCleanup(os.close, fd)
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o700)
        self.assertEqual((Path(path) / LOCK_NAME).read_text(), f"{os.getpid()}\n")

    def test_live_supervisor_kept(self) -> None:
        """While its supervisor holds the lock, a directory is not removed."""
        path, fd = make_run_dir(str(self.parent))
        self.addCleanup(os.close, fd)
        self.assertEqual(remove_stale_run_dirs(str(self.parent)), [])
        self.assertTrue(os.path.isdir(path))

    def test_dead_supervisor_removed(self) -> None:
        """Once nothing holds the lock (its supervisor was killed), the directory and the
        sockets in it are removed."""
        path, fd = make_run_dir(str(self.parent))
        (Path(path) / "notify-0").write_bytes(b"")
        os.close(fd)
        self.assertEqual(remove_stale_run_dirs(str(self.parent)), [path])
        self.assertFalse(os.path.exists(path))

    def test_without_lock_untouched(self) -> None:
        """A directory without a lock file (being made, or not one of these) is kept."""
        other = self.parent / f"{PREFIX}other"
        other.mkdir()
        self.assertEqual(remove_stale_run_dirs(str(self.parent)), [])
        self.assertTrue(other.is_dir())

    def test_other_names_untouched(self) -> None:
        """Only directories named as the supervisor names them are looked at."""
        path, fd = make_run_dir(str(self.parent))
        os.close(fd)
        renamed = self.parent / "something-else"
        os.rename(path, renamed)
        self.assertEqual(remove_stale_run_dirs(str(self.parent)), [])
        self.assertTrue(renamed.is_dir())


class _Waiting(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: object) -> None:
        self.ended.callback(None)


class RunDirHeldByWorkerTests(TestCase):
    """A worker that outlives its supervisor keeps the directory until it ends."""

    timeout = 20

    async def test_kept_while_a_worker_runs(self) -> None:
        """With the supervisor's descriptor closed but a process holding the inherited
        one (as a draining worker does), the directory stays; once it ended, it goes."""
        parent = Path(self.mktemp())
        parent.mkdir()
        path, fd = make_run_dir(str(parent))
        worker = _Waiting()
        transport = reactor.spawnProcess(
            worker, sys.executable, [sys.executable, "-c", "import sys; sys.stdin.read()"],
            env={}, childFDs={0: "w", 1: 1, 2: 2, WORKER_LOCK_FD: fd})
        os.close(fd)
        self.assertEqual(remove_stale_run_dirs(str(parent)), [])
        transport.closeStdin()
        await worker.ended
        self.assertEqual(remove_stale_run_dirs(str(parent)), [path])
