"""The launcher process on its own: run as a file with the standard library only, it speaks
its socket protocol (start, refuse, report the exit and the end of stderr) and takes its jobs
with it when the gateway's end closes."""

from __future__ import annotations

import errno
import json
import os
import select
import socket
import sys
from pathlib import Path
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.jobs import launcherd

__all__ = ["LauncherProcessTests"]

_WAIT = 10.0
"""Seconds an answer may take before the test fails (it takes milliseconds)."""


class LauncherProcessTests(SynchronousTestCase):
    """``python -I -S launcherd.py`` with the control socket as descriptor 3."""

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir(parents=True)
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        null = os.open(os.devnull, os.O_RDONLY)
        try:
            # Isolated and without site-packages: only the standard library can be imported.
            self.pid = os.posix_spawn(
                sys.executable, [sys.executable, "-I", "-S", launcherd.__file__, "0"], {},
                file_actions=[(os.POSIX_SPAWN_DUP2, null, 0),
                              (os.POSIX_SPAWN_DUP2, theirs.fileno(), launcherd.CONTROL_FD)])
        finally:
            os.close(null)
            theirs.close()
        ours.settimeout(_WAIT)
        self.control = ours
        self.addCleanup(self.stop)

    def stop(self) -> int:
        """Close the gateway's end; the launcher's exit status once it has exited."""
        if self.control.fileno() >= 0:
            self.control.close()
        if self.pid:
            _, status = os.waitpid(self.pid, 0)
            self.pid = 0
            return status
        return 0

    def ask(self, number: int, argv: list[str], **extra: Any) -> None:
        """Send one start request for ``argv`` in the test's directory."""
        request = {"id": number, "argv": argv, "cwd": str(self.directory),
                   "env": {"PATH": "/usr/bin:/bin"}, **extra}
        self.control.send(json.dumps(request).encode())

    def answer(self) -> dict[str, Any]:
        """The launcher's next message."""
        message: dict[str, Any] = json.loads(self.control.recv(launcherd.MAX_MESSAGE))
        return message

    def test_a_job_runs_and_its_exit_and_stderr_are_reported(self) -> None:
        """A bare program is found on the job's PATH; its exit status and the end of its
        stderr come back."""
        self.ask(1, ["sh", "-c", "echo oops >&2; exit 3"],
                 collect={"stderr": 100, "grace": 5})
        started = self.answer()
        self.assertEqual(set(started), {"id", "pid"})
        self.assertEqual(started["id"], 1)
        report = self.answer()
        self.assertEqual((report["pid"], os.WEXITSTATUS(report["status"])),
                         (started["pid"], 3))
        # The end of stderr comes with the report, or on its own once the pipe has ended.
        stderr = report["stderr"] if "stderr" in report else self.answer()["stderr"]
        self.assertEqual(stderr, "oops\n")

    def test_a_program_that_cannot_start_is_refused_with_its_errno(self) -> None:
        """A program missing from the job's PATH is answered with ENOENT, not a pid."""
        self.ask(2, ["no-such-program-here"], collect={"stderr": 100, "grace": 5})
        self.assertEqual(self.answer(), {"id": 2, "errno": errno.ENOENT,
                                         "error": os.strerror(errno.ENOENT)})

    def test_a_bad_request_is_refused_and_the_launcher_serves_on(self) -> None:
        """A request with neither pipes nor ``collect`` is refused; the next one runs."""
        self.ask(3, ["true"])
        refused = self.answer()
        self.assertEqual((refused["id"], refused["errno"]), (3, errno.EINVAL))
        self.ask(4, ["true"], collect={"stderr": 0, "grace": 5})
        self.assertIn("pid", self.answer())

    def test_closing_the_socket_ends_the_launcher_and_its_jobs(self) -> None:
        """When the gateway's end closes, the launcher kills what runs and exits."""
        self.ask(5, ["sleep", "60"], collect={"stderr": 100, "grace": 5})
        job = self.answer()["pid"]
        watch = os.pidfd_open(job)
        self.addCleanup(os.close, watch)
        status = self.stop()
        self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        readable, _, _ = select.select([watch], [], [], _WAIT)
        self.assertEqual(readable, [watch], "the job outlived its launcher")
