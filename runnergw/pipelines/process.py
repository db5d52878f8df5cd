"""Run one command-line job: no shell, its own directory and process group, a clean
environment, a deadline that kills the whole process group, and a bounded tail of stderr.

When the command exits, whatever it left running in its process group is killed, so helpers
that still hold its output pipes cannot hold the job (and the model's slot) open; a helper
that escaped the group (its own session) has its pipes closed on it after a short grace.
"""

from __future__ import annotations

import errno
import functools
import os
import shutil
import signal
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.process import Process
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

__all__ = ["Job", "JobResult", "spawn_in_group", "start_job"]

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


def _file_actions(fdmap: Mapping[int, int]) -> list[tuple[int, ...]]:
    """``posix_spawn`` file actions that give the child exactly ``fdmap`` (child descriptor →
    the gateway's) and close every other descriptor the child would inherit.

    Python opens its descriptors close-on-exec, so only a few ever need closing (one passed
    in by the service manager, say). A gateway descriptor whose number the child is to get
    is first moved out of the way, so that no copy overwrites a source still to be copied.
    """
    open_fds = {int(name) for name in os.listdir("/proc/self/fd")}
    spare = max(open_fds | set(fdmap) | set(fdmap.values())) + 1
    moved: dict[int, int] = {}
    actions: list[tuple[int, ...]] = []
    for source in sorted(set(fdmap.values())):
        if source in fdmap:
            actions.append((os.POSIX_SPAWN_DUP2, source, spare))
            moved[source] = spare
            spare += 1
    for target, source in sorted(fdmap.items()):
        actions.append((os.POSIX_SPAWN_DUP2, moved.get(source, source), target))
    actions.extend((os.POSIX_SPAWN_CLOSE, fd) for fd in moved.values())
    for fd in sorted(open_fds - fdmap.keys()):
        try:
            inheritable = os.get_inheritable(fd)
        except OSError:
            continue  # the listing's own descriptor, or one another thread closed
        if inheritable:
            actions.append((os.POSIX_SPAWN_CLOSE, fd))
    return actions


@functools.cache
def _restored_signals() -> tuple[int, ...]:
    """The signals the gateway ignores: an ignored signal stays ignored across exec, and a job
    must get them back at their defaults (``cp`` must stop on a closed pipe).

    Python ignores SIGPIPE and SIGXFSZ; whatever started the gateway may have had it ignore
    more (SIGINT and SIGQUIT for a shell's background job). Read once: the gateway never
    makes a signal ignored later.
    """
    ignored = {signal.SIGPIPE, signal.SIGXFSZ}
    for signum in range(1, signal.NSIG):
        try:
            if signal.getsignal(signum) == signal.SIG_IGN:
                ignored.add(signum)
        except ValueError:
            pass
    return tuple(sorted(ignored))


class _GroupProcess(Process):
    """Twisted's process transport for a child started by ``posix_spawn`` as the leader of a
    new process group, in a given directory.

    ``posix_spawn`` is far cheaper than forking a large gateway, and asking it for the group
    saves starting a helper program (``setsid``) for every job. It is a process group, not a
    session: with the kernel's autogroup scheduling a new session is a new scheduling group,
    and the gateway, which waits inside ``posix_spawn`` until the child has called exec,
    waited up to 8 ms for it on a busy machine (48 µs for a new group).

    ``posix_spawn`` cannot change directory, so the gateway steps into the job directory for
    the instant of the spawn.
    """

    def _trySpawnInsteadOfFork(self, path: str, uid: object, gid: object, executable: str,
                               args: Sequence[str], environment: Mapping[str, str],
                               kwargs: Mapping[str, Any]) -> bool:
        actions = _file_actions(kwargs["fdmap"])
        # O_PATH: the gateway's own directory need not be readable to come back to it.
        home = os.open(".", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            os.chdir(path)
            try:
                self.pid = os.posix_spawn(executable, list(args), environment,
                                          file_actions=actions, setpgroup=0,
                                          setsigdef=_restored_signals())
            finally:
                os.fchdir(home)
        finally:
            os.close(home)
        self.status = -1
        self.in_own_group = True
        return True


@functools.cache
def _null_input() -> int:
    """A descriptor of /dev/null open for reading, opened once for the gateway's life."""
    return os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)


def spawn_in_group(reactor: IReactorProcess, protocol: ProcessProtocol,
                   command: Sequence[str], directory: str,
                   environment: Mapping[str, str]) -> None:
    """Start ``command`` (an argv list) in ``directory`` (absolute), as the leader of a
    process group of its own, with exactly ``environment``, stdin from /dev/null, and stdout
    and stderr as pipes to ``protocol``.

    A bare program name is looked up on the job's ``PATH``, not the gateway's.

    Raises:
        OSError: the program cannot be started.
    """
    program = command[0]
    if "/" not in program:
        found = shutil.which(program, path=environment.get("PATH", os.defpath))
        if found is None:
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), program)
        program = found
    # stdin is /dev/null: a job reads nothing from the gateway, and a pipe would cost a
    # descriptor pair and an event-loop registration per job.
    process = _GroupProcess(reactor, program, list(command), dict(environment), directory,
                            protocol, childFDs={0: _null_input(), 1: "r", 2: "r"})
    if not getattr(process, "in_own_group", False):
        # Twisted forked instead of calling the hook above: the job would share the
        # gateway's process group, and a timeout could not kill its helpers. Fail closed.
        process.signalProcess("KILL")
        raise OSError(errno.ENOSYS, "this Twisted version does not spawn through posix_spawn")


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
        if pid is None:
            return
        try:
            os.killpg(pid, signum)
        except (ProcessLookupError, PermissionError):
            if self._exited:
                return  # reaped: the number may already name another process
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
        # Children left in the group (a script's helpers) go with it; they may hold the
        # output pipes, which would keep the job from ending.
        self._exited = True  # reaped: from now on only the group may be signalled
        self._signal_group(signal.SIGKILL)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()  # the command ended in time; only its pipes are left
        self._timer = None
        self._pipe_timer = self.clock.callLater(PIPE_GRACE, self._close_pipes)
        if not self._group_alive():
            self.exited.callback(None)
        # Else helpers are still dying (one may hold the GPU): ``exited`` waits for the end.

    def _group_alive(self) -> bool:
        try:
            os.killpg(self._pid, 0)  # type: ignore[arg-type]
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _close_pipes(self) -> None:
        self._pipe_timer = None
        self.transport.loseConnection()

    def processEnded(self, reason: Failure) -> None:
        for timer in (self._timer, self._kill_timer, self._pipe_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._exited = True
        self._signal_group(signal.SIGKILL)
        if not self.exited.called:
            self.exited.callback(None)
        self.gone.callback(None)
        if self._cancelled:
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
        result: Fires with the job's result. Cancelling it (the client left) kills the job's
            process group and fails it with ``CancelledError`` at once.
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
    reactor: IReactorProcess,
    clock: IReactorTime,
    command: Sequence[str],
    directory: str,
    environment: Mapping[str, str],
    timeout: float,
    stdout_limit: int = STDERR_TAIL,
) -> Job:
    """Start ``command`` (an argv list, never a shell) in ``directory``.

    The result keeps the last ``STDERR_TAIL`` bytes of stderr and the last ``stdout_limit``
    bytes of stdout.

    Raises:
        OSError: the program cannot be started.
    """
    protocol = _JobProtocol(clock, timeout, stdout_limit)
    spawn_in_group(reactor, protocol, command, directory, environment)
    return Job(protocol.ended, protocol.exited, protocol.gone, protocol)

