"""Job directories: one private directory per request under ``jobsPath``, removed afterwards
on every path, and leftovers of an earlier run removed at start."""

from __future__ import annotations

import fcntl
import itertools
import os
import secrets
import shutil
from pathlib import Path
from typing import Any

from twisted.internet.threads import deferToThreadPool

__all__ = [
    "JobsPathBusy",
    "clean_job_directories",
    "lock_jobs_path",
    "make_job_directory",
    "remove_job_directory",
]


class JobsPathBusy(Exception):
    """Another gateway holds the jobs directory; the message names it."""


def lock_jobs_path(jobs_path: str) -> int:
    """Take the jobs directory for this gateway alone; returns the lock's descriptor, which
    holds the lock until it is closed (or the process ends).

    A second gateway given the same directory would remove the first one's live job
    directories as leftovers when it starts. The lock is on the directory itself, so no tmp
    cleaner can remove a lock file from under it (and systemd-tmpfiles leaves a locked
    directory alone).

    Raises:
        JobsPathBusy: another process holds the lock.
        OSError: the directory cannot be opened.
    """
    fd = os.open(jobs_path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise JobsPathBusy(f"{jobs_path} is in use by another runnergw; give each gateway a "
                           "jobs directory of its own") from None
    except OSError:
        os.close(fd)
        raise
    return fd


SMALL_FILES = 16
SMALL_BYTES = 1 << 20
"""A directory of at most this many files and bytes is removed on the reactor thread: that
takes a few syscalls, less than handing it to a worker thread. Anything larger (an upload of
a gigabyte can take the disk milliseconds to free) is removed by a worker thread."""


_JOB_NAMES = itertools.count()
_RUN = secrets.token_hex(4)
"""Job directories are ``job-<run>-<number>``: unique within the gateway's life by the
number, across restarts by the run's random part (``mkdtemp``'s random names cost several
times more, and the jobs directory is the gateway's own)."""


def make_job_directory(jobs_path: str) -> str:
    """A new private directory under ``jobs_path`` (made again, private, if a tmp cleaner
    removed it). A name that is taken (by anyone) is skipped, never reused."""
    made_parent = False
    while True:
        path = f"{jobs_path}/job-{_RUN}-{next(_JOB_NAMES):x}"
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            continue
        except FileNotFoundError:
            if made_parent:
                raise
            os.makedirs(jobs_path, mode=0o700, exist_ok=True)
            made_parent = True
            continue
        return path


def _remove_if_small(directory: str) -> bool:
    """Remove ``directory`` if it holds only a few small files; False if it was left."""
    names = []
    size = 0
    with os.scandir(directory) as entries:
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                return False
            size += entry.stat(follow_symlinks=False).st_size
            names.append(entry.path)
            if size > SMALL_BYTES or len(names) > SMALL_FILES:
                return False
    for name in names:
        os.unlink(name)
    os.rmdir(directory)
    return True


async def remove_job_directory(reactor: Any, directory: str) -> None:
    """Remove ``directory`` and everything in it; never fails."""
    try:
        if _remove_if_small(directory):
            return
    except OSError:
        pass  # something changed under us: the thread's rmtree copes with whatever is left
    await deferToThreadPool(reactor, reactor.getThreadPool(), shutil.rmtree, directory, True)


def clean_job_directories(jobs_path: str) -> int:
    """Remove job directories left by a previous run (a crash, a kill); returns how many."""
    removed = 0
    for leftover in Path(jobs_path).glob("job-*"):
        shutil.rmtree(leftover, ignore_errors=True)
        removed += 1
    return removed
