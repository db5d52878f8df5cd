"""The gateway's side of the job launcher (``launcherd.py``, a process of its own).

Starting a program costs its parent a wait until the child has called exec; under load that
is a quarter of a busy gateway's time, during which every connection stands still. The
launcher takes that wait, the reaping and the reading of a command's stderr off the event
loop: the gateway sends it the command over a ``SOCK_SEQPACKET`` socket (with the job's
pipes when the gateway reads them itself, as for ffprobe's output); the launcher answers with
the pid, and later with the exit status and the end of stderr.

Signals go straight from the gateway to the job's process group (same user). If the launcher
dies, the process groups of the jobs it ran are killed and those jobs fail with
``LauncherLost``; the next job starts a new launcher.
"""

from __future__ import annotations

import errno
import itertools
import json
import os
import signal
import socket
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.jobs import launcherd
from runnergw.jobs.launched import (
    MAX_STDERR_TAIL,
    ControlSocket,
    LaunchedProcess,
    PendingLaunch,
    exit_reason,
)

__all__ = ["JobLauncher", "LauncherLost"]

LAUNCH_TIMEOUT = 30.0
"""Seconds the launcher has to start a job (it takes a millisecond or so)."""
RESTART_DELAY = 1.0
"""After the launcher died, the next is started no sooner than this many seconds later."""
STOP_GRACE = 10.0
"""Seconds the launcher has to exit once told to stop, before it is killed."""


class LauncherLost(OSError):
    """The launcher process ended while the job ran or was being started: the job was
    killed, or never started."""

    def __init__(self) -> None:
        super().__init__(errno.EIO, "the job launcher stopped")


class _LauncherProtocol(ProcessProtocol):
    """The launcher process itself: what it writes is logged, its end is noticed."""

    def __init__(self, launcher: JobLauncher) -> None:
        self.launcher = launcher
        self.ended: Deferred[None] = Deferred()

    def errReceived(self, data: bytes) -> None:
        for line in data.decode("utf-8", "replace").splitlines():
            self.launcher.log.warn("Job launcher: {line}", line=line)

    outReceived = errReceived

    def processEnded(self, reason: Failure) -> None:
        self.launcher._ended(self, reason)
        self.ended.callback(None)


class JobLauncher:
    """Starts jobs through the launcher process, which it starts on first use.

    The launcher runs ``niceness`` nicer than the gateway, and so do the jobs it starts: on
    a busy CPU the gateway's event loop (every stream of every client) goes first.
    """

    log = Logger()

    def __init__(self, reactor: Any, niceness: int = 0) -> None:
        """Jobs run ``niceness`` (0-19) nicer than the gateway."""
        self.reactor = reactor
        self.niceness = niceness
        self._control: ControlSocket | None = None
        self._process: _LauncherProtocol | None = None
        self._launches: dict[int, PendingLaunch] = {}
        self._running: dict[int, LaunchedProcess] = {}
        self._ending: dict[int, LaunchedProcess] = {}
        """Jobs that have exited, whose stderr the launcher has not finished reading, by the
        number of the request that started them."""
        self._numbers = itertools.count()
        self._stopping = False
        self._lost_at: float | None = None
        self._watchdog: IDelayedCall | None = None

    def launch(self, protocol: ProcessProtocol, command: Sequence[str], directory: str,
               environment: Mapping[str, str],
               stderr_tail: tuple[int, float] | None = None) -> Deferred[None]:
        """Start ``command`` (an argv list) in ``directory`` (absolute) as the leader of a
        new process group, with exactly ``environment``, stdin from /dev/null and stdout and
        stderr to ``protocol`` through pipes the gateway reads, which is connected before
        this fires.

        With ``stderr_tail`` (bytes, grace seconds), stdout goes to /dev/null and the
        launcher reads stderr: ``protocol`` gets its last bytes at once when it ends, or
        when the grace has passed after the command's exit.

        Fails with ``OSError`` when the program cannot be started: ``E2BIG`` for a command
        and environment too large to hand over, ``EAGAIN`` for a moment after the launcher
        died (it is restarted at most once a second), ``ETIMEDOUT`` when the launcher does
        not answer within ``LAUNCH_TIMEOUT`` seconds.
        """
        if self._stopping:
            raise LauncherLost()
        number = next(self._numbers)
        request: dict[str, Any] = {"id": number, "argv": list(command), "cwd": directory,
                                   "env": dict(environment)}
        if stderr_tail is not None:
            if not 0 <= stderr_tail[0] <= MAX_STDERR_TAIL:
                raise ValueError(f"a stderr tail of at most {MAX_STDERR_TAIL} bytes")
            request["collect"] = {"stderr": stderr_tail[0], "grace": stderr_tail[1]}
        data = json.dumps(request, separators=(",", ":")).encode()
        if len(data) > launcherd.MAX_MESSAGE:
            raise OSError(errno.E2BIG, "command and environment too large to start")
        control = self._control or self._start()
        launch = PendingLaunch(protocol, self.reactor.seconds(), stderr_tail is not None)
        write_ends: list[int] = []
        try:
            for fd in () if stderr_tail is not None else (1, 2):
                launch.pipes[fd], write_end = os.pipe()
                write_ends.append(write_end)
        except OSError:
            launch.close()
            for write_end in write_ends:
                os.close(write_end)
            raise
        self._launches[number] = launch
        if self._watchdog is None:
            self._watchdog = self.reactor.callLater(LAUNCH_TIMEOUT / 4, self._watch)
        control.send(number, data, tuple(write_ends))
        return launch.started

    def _start(self) -> ControlSocket:
        if self._lost_at is not None and self.reactor.seconds() - self._lost_at < RESTART_DELAY:
            raise OSError(errno.EAGAIN, "the job launcher is restarting")
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
            try:
                protocol = _LauncherProtocol(self)
                program = [sys.executable, "-I", "-S", launcherd.__file__,
                           str(self.niceness)]
                self.reactor.spawnProcess(
                    protocol, sys.executable, program, env={},
                    childFDs={0: null, 1: "r", 2: "r", launcherd.CONTROL_FD: theirs.fileno()})
            finally:
                os.close(null)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._process = protocol
        self._control = ControlSocket(self.reactor, ours, self._answer, self._refused,
                                      self._lost)
        return self._control

    def _answer(self, message: dict[str, Any]) -> None:
        if "id" in message:
            launch = self._launches.pop(message["id"], None)
            if launch is None:
                if "pid" in message:
                    # Started after its launch timed out: nobody waits for it. Not reaped
                    # yet (its exit report would follow), so its group is its own still.
                    self._kill_group(message["pid"])
                return
            if "pid" not in message:
                launch.close()
                launch.started.errback(OSError(message["errno"], message["error"]))
                return
            pid = message["pid"]
            process = LaunchedProcess(self.reactor, launch.protocol, pid, launch.pipes,
                                      launch.collected)
            process.number = message["id"]
            self._running[pid] = process
            launch.started.callback(None)
            return
        if "job" in message:  # the end of a stderr, after the exit report
            ending = self._ending.pop(message["job"], None)
            if ending is not None:
                ending.output_ended(message["stderr"].encode("latin-1"))
            return
        process = self._running.pop(message["pid"], None)
        if process is None:
            return
        process.group_alive = bool(message["group"])
        process.exited(exit_reason(message["status"]))
        if "stderr" in message:
            process.output_ended(message["stderr"].encode("latin-1"))
        elif process.awaiting_output:
            # Reported later, by the request's number: the pid is free for another job.
            self._ending[process.number] = process

    @staticmethod
    def _kill_group(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass

    def _refused(self, number: int, error: OSError) -> None:
        launch = self._launches.pop(number, None)
        if launch is not None:
            launch.close()
            launch.started.errback(error)

    def _watch(self) -> None:
        """Fail the launches the launcher has not answered in time."""
        self._watchdog = None
        now = self.reactor.seconds()
        for number, launch in list(self._launches.items()):
            if now - launch.asked_at >= LAUNCH_TIMEOUT:
                self.log.error("The job launcher did not start a job within {timeout} s",
                               timeout=LAUNCH_TIMEOUT)
                self._refused(number, OSError(errno.ETIMEDOUT,
                                              "the job launcher did not answer"))
        if self._launches:
            self._watchdog = self.reactor.callLater(LAUNCH_TIMEOUT / 4, self._watch)

    def _lost(self, control: ControlSocket) -> None:
        """The socket to the launcher closed: the launcher is gone, or going."""
        if control is not self._control:
            return
        self._control = None
        if not self._stopping:
            self._lost_at = self.reactor.seconds()
            self.log.error("The job launcher stopped; {running} running jobs are killed",
                           running=len(self._running))
        launches, self._launches = self._launches, {}
        for launch in launches.values():
            launch.close()
            launch.started.errback(LauncherLost())
        running, self._running = self._running, {}
        for pid, process in running.items():
            # Orphans now: killed at once, before anyone could reap them and free their pid.
            self._kill_group(pid)
            process.group_alive = True
            process.exited(LauncherLost())
            process.output_ended(b"")
        ending, self._ending = self._ending, {}
        for process in ending.values():
            process.output_ended(b"")

    def _ended(self, protocol: _LauncherProtocol, reason: Failure) -> None:
        if protocol is self._process:
            self._process = None
        if not self._stopping:
            self.log.error("The job launcher exited: {reason}", reason=reason.value)

    def stop(self) -> Deferred[None]:
        """Stop the launcher (it kills what still runs): fires once it has exited, which
        it is made to do after ``STOP_GRACE`` seconds."""
        self._stopping = True
        if self._watchdog is not None:
            self._watchdog.cancel()
            self._watchdog = None
        process, control = self._process, self._control
        if control is not None:
            control.close()
        if process is None:
            return succeed(None)
        deadline = self.reactor.callLater(STOP_GRACE, _kill_process, process)

        def stopped(result: None) -> None:
            if deadline.active():
                deadline.cancel()
            return result

        return process.ended.addBoth(stopped)


def _kill_process(protocol: _LauncherProtocol) -> None:
    if protocol.transport is not None:
        try:
            protocol.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass
