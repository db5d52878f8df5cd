"""Run one command-line job: no shell, its own directory and process group, a clean
environment, a deadline that kills the whole process group, and a bounded tail of stderr.
Jobs are started by the job launcher (``launcher``), never by the gateway's event loop.

When the command exits, the launcher kills whatever it left running in its process group, so
helpers that still hold its output pipes cannot hold the job (and the model's slot) open; a
helper that escaped the group (its own session) has its pipes closed on it after a short
grace. The gateway signals a job's group only until its exit is reported: from then on the
number may name another process.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping, Sequence

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

from runnergw.jobs.launcher import JobLauncher, LauncherLost

__all__ = ["Job", "JobResult", "LauncherLost", "start_job"]

STDERR_TAIL = 4096
"""Bytes of stderr kept (the end of it, where errors are), and of stdout unless told."""
KILL_GRACE = 5.0
"""Seconds between SIGTERM and SIGKILL."""
PIPE_GRACE = 2.0
"""Seconds the output pipes may stay open after the command and its group are gone."""


@attrs.frozen
class JobResult:
    """How a job ended."""

    exit_code: int | None
    """None when killed by a signal."""
    signal: int | None
    timed_out: bool
    stderr_tail: bytes
    stdout_tail: bytes


class _JobProtocol(ProcessProtocol):
    def __init__(self, clock: IReactorTime, timeout: float, stdout_limit: int) -> None:
        self.clock = clock
        self.timeout = timeout
        self.stdout_limit = stdout_limit
        self.ended: Deferred[JobResult] = Deferred(self._cancel)
        self.gone: Deferred[None] = Deferred()
        self.exited: Deferred[None] = Deferred()
        self._pid: int | None = None
        self._exited = False
        self._pipe_timer: IDelayedCall | None = None
        self._stderr = bytearray()
        self._stdout = bytearray()
        self._timer: IDelayedCall | None = None
        self._kill_timer: IDelayedCall | None = None
        self._timed_out = False
        self._cancelled = False

    def connectionMade(self) -> None:
        # Kept: the transport forgets the pid once the command has been reaped, and the
        # group (same number) may still hold its helpers then.
        self._pid = self.transport.pid
        self._timer = self.clock.callLater(self.timeout, self._deadline)

    def outReceived(self, data: bytes) -> None:
        self._stdout += data
        if len(self._stdout) > self.stdout_limit:
            del self._stdout[: len(self._stdout) - self.stdout_limit]

    def errReceived(self, data: bytes) -> None:
        self._stderr += data
        if len(self._stderr) > STDERR_TAIL:
            del self._stderr[: len(self._stderr) - STDERR_TAIL]

    def _signal_group(self, signum: int) -> None:
        pid = self._pid
        if pid is None or self._exited:
            return  # reaped: the launcher killed its group, the number may be reused
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    def kill_now(self) -> None:
        """KILL the whole process group now."""
        self._signal_group(signal.SIGKILL)

    def stop(self) -> None:
        """TERM the whole process group now, KILL it after the grace period."""
        self._signal_group(signal.SIGTERM)
        if self._kill_timer is None:
            self._kill_timer = self.clock.callLater(KILL_GRACE, self._signal_group,
                                                    signal.SIGKILL)

    def _deadline(self) -> None:
        self._timer = None
        self._timed_out = True
        self.stop()

    def _cancel(self, _: Deferred[JobResult]) -> None:
        self._cancelled = True
        self.stop()

    def processExited(self, reason: Failure) -> None:
        # The launcher killed what the command left in its group (a script's helpers, which
        # may hold the output pipes) before it reaped the command.
        self._exited = True
        for timer in (self._timer, self._kill_timer):
            if timer is not None and timer.active():
                timer.cancel()  # the command has ended; only its pipes are left
        self._timer = self._kill_timer = None
        if self.transport.pipes:  # else the launcher reads stderr and gives it the grace
            self._pipe_timer = self.clock.callLater(PIPE_GRACE, self._close_pipes)
        if not self.transport.group_alive:
            self.exited.callback(None)
        # Else helpers are still dying (one may hold the GPU): ``exited`` waits for the end.

    def _close_pipes(self) -> None:
        self._pipe_timer = None
        self.transport.loseConnection()

    def processEnded(self, reason: Failure) -> None:
        for timer in (self._timer, self._kill_timer, self._pipe_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._exited = True
        if not self.exited.called:
            self.exited.callback(None)
        self.gone.callback(None)
        if self._cancelled:
            return
        if reason.check(LauncherLost):
            self.ended.errback(reason)
            return
        code: int | None = None
        signum: int | None = None
        if reason.check(ProcessDone):
            code = 0
        elif reason.check(ProcessTerminated):
            code = reason.value.exitCode
            signum = reason.value.signal
        self.ended.callback(JobResult(code, signum, self._timed_out, bytes(self._stderr),
                                      bytes(self._stdout)))


@attrs.frozen
class Job:
    """A started job.

    Attributes:
        result: Fires with the job's result, or fails with ``LauncherLost``. Cancelling it
            (the client left) kills the job's process group and fails it with
            ``CancelledError`` at once.
        exited: Fires once the command has exited and been reaped and nothing of its
            process group is left (it is sent SIGKILL then; when something of it is still
            dying, this waits for ``ended``). What it wrote to its pipes may still be
            arriving: a busy gateway notices the pipes' end an event-loop turn or more later.
        ended: Fires once the process has ended and its pipes are closed, however it ended
            (after a cancellation, that can be up to ``KILL_GRACE`` seconds later).
    """

    result: Deferred[JobResult]
    exited: Deferred[None]
    ended: Deferred[None]
    protocol: _JobProtocol = attrs.field(repr=False)

    def cancel(self) -> None:
        """Kill the job (TERM, then KILL after the grace period)."""
        self.result.cancel()

    def kill_now(self) -> None:
        """KILL the job's process group at once (the gateway is stopping: no timer would
        fire to follow a TERM up)."""
        self.protocol.kill_now()


def start_job(
    launcher: JobLauncher,
    clock: IReactorTime,
    command: Sequence[str],
    directory: str,
    environment: Mapping[str, str],
    timeout: float,
    stdout_limit: int = STDERR_TAIL,
) -> Deferred[Job]:
    """Start ``command`` (an argv list, never a shell) in ``directory`` (absolute), as the
    leader of a process group of its own, with exactly ``environment`` and stdin from
    /dev/null. A bare program name is looked up on the job's ``PATH``.

    The result keeps the last ``STDERR_TAIL`` bytes of stderr and the last ``stdout_limit``
    bytes of stdout; with a limit of 0, stdout goes to /dev/null and the launcher reads
    stderr (the gateway then has no pipe of the job's to read).

    Fails with ``OSError`` when the program cannot be started.
    """
    protocol = _JobProtocol(clock, timeout, stdout_limit)
    started = launcher.launch(
        protocol, command, directory, environment,
        stderr_tail=(STDERR_TAIL, PIPE_GRACE) if stdout_limit == 0 else None)
    return started.addCallback(
        lambda _: Job(protocol.ended, protocol.exited, protocol.gone, protocol))
