"""The supervisor's private directory (its workers' notify and metrics sockets), and the
removal of the ones supervisors killed with -9 left behind.

Each directory holds a ``lock`` file, created already locked (``flock``) and renamed into
place, whose descriptor the supervisor keeps and every worker inherits: the lock is free
only once the supervisor and all of its workers have ended. A directory of this user whose
lock can be taken is proved stale; one without a lock file is never touched.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile

__all__ = ["LOCK_NAME", "PREFIX", "WORKER_LOCK_FD", "make_run_dir", "remove_stale_run_dirs"]

PREFIX = "runnergw-workers-"
LOCK_NAME = "lock"
WORKER_LOCK_FD = 4
"""The descriptor a worker inherits the lock as: it keeps it open until it ends."""


def make_run_dir(parent: str | None = None) -> tuple[str, int]:
    """A new private directory (mode 0700) and the descriptor holding its lock (recording
    this process' pid, for an operator); the caller closes the descriptor once the
    directory is removed."""
    path = tempfile.mkdtemp(prefix=PREFIX, dir=parent)
    making = os.path.join(path, f".{LOCK_NAME}-new")
    fd = os.open(making, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.rename(making, os.path.join(path, LOCK_NAME))
    return path, fd


def remove_stale_run_dirs(parent: str | None = None) -> list[str]:
    """Remove the private directories of this user in ``parent`` (the temporary directory)
    that no supervisor nor worker holds any more; the paths removed."""
    parent = parent or tempfile.gettempdir()
    removed = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return []
    for entry in entries:
        if not entry.name.startswith(PREFIX):
            continue
        try:
            if (not entry.is_dir(follow_symlinks=False)
                    or entry.stat(follow_symlinks=False).st_uid != os.getuid()):
                continue
            fd = os.open(os.path.join(entry.path, LOCK_NAME),
                         os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue  # gone, or no lock: being made, or not this kind of directory
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # its supervisor or one of its workers still runs
        try:
            shutil.rmtree(entry.path, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(entry.path)
    return removed
