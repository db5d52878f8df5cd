"""Job directories: made private, removed whole whatever the job left in them, one gateway
per jobs directory."""

from __future__ import annotations

import itertools
import os
import stat
from pathlib import Path

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from runnergw.jobs import workdir
from runnergw.jobs.workdir import (
    SMALL_BYTES,
    SMALL_FILES,
    JobsPathBusy,
    lock_jobs_path,
    make_job_directory,
    remove_job_directory,
)


class JobDirectoryTests(TestCase):
    def setUp(self) -> None:
        self.jobs = Path(self.mktemp()).absolute()
        self.jobs.mkdir(mode=0o700)

    def test_made_private_and_again_after_a_tmp_cleaner(self) -> None:
        directory = Path(make_job_directory(str(self.jobs)))
        self.assertEqual(stat.S_IMODE(directory.stat().st_mode), 0o700)
        directory.rmdir()
        self.jobs.rmdir()
        again = Path(make_job_directory(str(self.jobs)))
        self.assertEqual(again.parent, self.jobs)
        self.assertEqual(stat.S_IMODE(self.jobs.stat().st_mode), 0o700)

    def test_a_name_taken_by_someone_else_is_skipped(self) -> None:
        self.patch(workdir, "_JOB_NAMES", itertools.count())
        outside = Path(self.mktemp()).absolute()
        outside.mkdir()
        taken = self.jobs / f"job-{workdir._RUN}-0"
        taken.symlink_to(outside)
        directory = Path(make_job_directory(str(self.jobs)))
        self.assertEqual(directory.name, f"job-{workdir._RUN}-1")
        self.assertTrue(taken.is_symlink())
        self.assertEqual(os.listdir(outside), [])

    async def assert_removed(self, fill: str) -> None:
        directory = Path(make_job_directory(str(self.jobs)))
        outside = self.jobs.parent / f"outside-{fill}"
        outside.write_bytes(b"not the job's")
        if fill == "few small files":
            for name in ("upload.wav", "output.mp3"):
                (directory / name).write_bytes(b"x" * 100)
        elif fill == "many files":
            for index in range(SMALL_FILES + 1):
                (directory / f"part-{index}").write_bytes(b"x")
        elif fill == "a large file":
            (directory / "upload.bin").write_bytes(b"x" * (SMALL_BYTES + 1))
        elif fill == "subdirectories":
            (directory / "tmp" / "deeper").mkdir(parents=True)
            (directory / "tmp" / "deeper" / "cache").write_bytes(b"x")
        elif fill == "a symbolic link":
            (directory / "link").symlink_to(outside)
        await remove_job_directory(reactor, str(directory))
        self.assertEqual(os.listdir(self.jobs), [], fill)
        self.assertEqual(outside.read_bytes(), b"not the job's")

    async def test_removed_whatever_it_holds(self) -> None:
        for fill in ("nothing", "few small files", "many files", "a large file",
                     "subdirectories", "a symbolic link"):
            await self.assert_removed(fill)

    async def test_removing_a_directory_already_gone_is_quiet(self) -> None:
        directory = make_job_directory(str(self.jobs))
        os.rmdir(directory)
        await remove_job_directory(reactor, directory)


class LockTests(TestCase):
    def test_one_holder_at_a_time(self) -> None:
        jobs = Path(self.mktemp()).absolute()
        jobs.mkdir(mode=0o700)
        held = lock_jobs_path(str(jobs))
        with self.assertRaises(JobsPathBusy):
            lock_jobs_path(str(jobs))
        os.close(held)
        os.close(lock_jobs_path(str(jobs)))
        self.assertEqual(os.listdir(jobs), [], "no lock file is left in the directory")
