"""The gateway's side of the job launcher (``launcherd.py``, a process of its own).

Starting a program costs its parent a wait until the child has called exec; under load that
is a quarter of a busy gateway's time, during which every connection stands still. The
launcher takes that wait, and the reaping, off the event loop: the gateway sends it the
command with the job's output pipes over a ``SOCK_SEQPACKET`` socket and reads the pipes
itself; the launcher answers with the pid, and later with the exit status.

Signals go straight from the gateway to the job's process group (same user). If the launcher
dies, the process groups of the jobs it ran are killed and those jobs fail with
``LauncherLost``; the next job starts a new launcher.
"""

from __future__ import annotations

import array
import errno
import itertools
import json
import os
import signal
import socket
import sys
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet import abstract
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.internet.process import ProcessReader
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.pipelines import launcherd

__all__ = ["JobLauncher", "LauncherLost"]

_RECEIVE_SIZE = 1 << 16
"""The launcher's messages are a few dozen bytes, or a few KiB with a stderr tail."""
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


def _reason(status: int) -> BaseException:
    """How a wait status ended a process, as Twisted's process transport says it."""
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return ProcessDone(status) if code == 0 else ProcessTerminated(code, None, status)
    return ProcessTerminated(None, os.WTERMSIG(status), status)


class _LaunchedProcess:
    """A job's transport: its pid, and the gateway's ends of its stdout and stderr pipes, or
    none when the launcher reads its stderr.

    It gives a ``ProcessProtocol`` what Twisted's own process transport gives it:
    ``childDataReceived`` for each pipe (for a stderr read by the launcher, its tail at its
    end), ``processExited`` once the launcher has reaped the command, ``processEnded`` once
    both that and the end of the output have happened.
    """

    def __init__(self, reactor: Any, protocol: ProcessProtocol, pid: int,
                 pipes: Mapping[int, int], collected: bool) -> None:
        """``pipes``: the job's descriptor (1, 2) → the gateway's read end of its pipe;
        ``collected``: the launcher reads the job's stderr and sends its tail."""
        self.pid = pid
        self.protocol = protocol
        self.pipes = {fd: ProcessReader(reactor, self, fd, read_end)
                      for fd, read_end in pipes.items()}
        self.awaiting_output = collected
        self._end: BaseException | None = None
        self._ended = False
        self.group_alive = True
        """Whether something of the job's process group outlived its command (known once
        it has exited)."""
        protocol.makeConnection(self)

    def output_ended(self, stderr: bytes) -> None:
        """The launcher read the job's stderr to its end (or gave up on it): its tail."""
        if not self.awaiting_output:
            return
        self.awaiting_output = False
        if stderr:
            self.protocol.childDataReceived(2, stderr)
        self._maybe_ended()

    def childDataReceived(self, fd: int, data: bytes) -> None:
        self.protocol.childDataReceived(fd, data)

    def childConnectionLost(self, fd: int, reason: Failure) -> None:
        os.close(self.pipes.pop(fd).fileno())
        self.protocol.childConnectionLost(fd)
        self._maybe_ended()

    def exited(self, end: BaseException) -> None:
        """The command has exited and been reaped (or was lost with the launcher)."""
        if self._end is not None:
            return
        self._end = end
        self.protocol.processExited(Failure(end))
        self._maybe_ended()

    def _maybe_ended(self) -> None:
        if (self._end is not None and not self.pipes and not self.awaiting_output
                and not self._ended):
            self._ended = True
            self.protocol.processEnded(Failure(self._end))

    def loseConnection(self) -> None:
        """Stop reading the job's output and close the gateway's ends of its pipes (a
        stderr read by the launcher is closed by it, after the grace it was given)."""
        for reader in list(self.pipes.values()):
            reader.loseConnection()


class _Launch:
    """A job asked for and not yet started."""

    def __init__(self, protocol: ProcessProtocol, asked_at: float, collected: bool) -> None:
        self.protocol = protocol
        self.asked_at = asked_at
        self.collected = collected
        self.pipes: dict[int, int] = {}
        """The job's descriptor (1, 2) → the gateway's read end of its pipe."""
        self.started: Deferred[None] = Deferred()

    def close(self) -> None:
        for fd in self.pipes.values():
            os.close(fd)


class _ControlSocket(abstract.FileDescriptor):
    """The gateway's end of the socket to the launcher: requests go out with the pipes they
    name (kept open until sent), answers come in as datagrams."""

    def __init__(self, reactor: Any, sock: socket.socket, launcher: JobLauncher) -> None:
        super().__init__(reactor)
        self.socket = sock
        self.launcher = launcher
        self._outgoing: deque[tuple[int, bytes, tuple[int, ...]]] = deque()
        self._buffer = bytearray(_RECEIVE_SIZE)
        """Received into, not allocated for every message (and every empty read)."""
        self.connected = True
        self.startReading()

    def fileno(self) -> int:
        return self.socket.fileno()

    def send(self, number: int, data: bytes, pipes: tuple[int, ...]) -> None:
        self._outgoing.append((number, data, pipes))
        if len(self._outgoing) == 1:
            why = self.doWrite()
            if why is not None:
                self.close(Failure(why))

    def doWrite(self) -> Any:
        while self._outgoing:
            number, data, pipes = self._outgoing[0]
            try:
                if pipes:
                    self.socket.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                                  array.array("i", pipes))])
                else:
                    self.socket.send(data)
            except BlockingIOError:
                self.startWriting()
                return None
            except OSError as e:
                if e.errno == errno.EMSGSIZE:
                    refusal = OSError(errno.E2BIG, "command and environment too large to start")
                elif e.errno == errno.ENOBUFS:
                    refusal = OSError(errno.ENOBUFS, "no memory to hand the job over")
                else:
                    return e  # the launcher is gone: connectionLost follows
                self.launcher._refused(number, refusal)
            self._outgoing.popleft()
            for fd in pipes:
                os.close(fd)  # sent: the launcher holds them now
        self.stopWriting()
        return None

    def doRead(self) -> Any:
        buffer = self._buffer
        while self.connected:
            try:
                size = self.socket.recv_into(buffer)
            except BlockingIOError:
                return None
            except OSError as e:
                return e
            if not size:
                return CONNECTION_LOST
            self.launcher._answer(json.loads(buffer[:size]))
        return None

    def writeSomeData(self, data: bytes) -> int:
        return len(data)  # nothing goes through the stream buffer of FileDescriptor

    def close(self, reason: Failure | None = None) -> None:
        """Close the socket now: the launcher reads its end and stops."""
        if self.connected:
            self.connectionLost(reason or Failure(CONNECTION_DONE))

    def connectionLost(self, reason: Failure) -> None:
        super().connectionLost(reason)
        for _, _, pipes in self._outgoing:
            for fd in pipes:
                os.close(fd)
        self._outgoing.clear()
        self.socket.close()
        self.launcher._lost(self)


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
        self._control: _ControlSocket | None = None
        self._process: _LauncherProtocol | None = None
        self._launches: dict[int, _Launch] = {}
        self._running: dict[int, _LaunchedProcess] = {}
        self._ending: dict[int, _LaunchedProcess] = {}
        """Jobs that have exited, whose stderr the launcher has not finished reading."""
        self._numbers = itertools.count()
        self._stopping = False
        self._lost_at: float | None = None
        self._watchdog: IDelayedCall | None = None

    def launch(self, protocol: ProcessProtocol, command: Sequence[str], directory: str,
               environment: Mapping[str, str], stdout: bool = True,
               stderr_tail: tuple[int, float] | None = None) -> Deferred[None]:
        """Start ``command`` (an argv list) in ``directory`` (absolute) as the leader of a
        new process group, with exactly ``environment``, stdin from /dev/null and stderr,
        and stdout unless not wanted (it goes to /dev/null then), to ``protocol``, which is
        connected before this fires.

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
            request["collect"] = {"stderr": stderr_tail[0], "grace": stderr_tail[1]}
        data = json.dumps(request, separators=(",", ":")).encode()
        if len(data) > launcherd.MAX_MESSAGE:
            raise OSError(errno.E2BIG, "command and environment too large to start")
        control = self._control or self._start()
        launch = _Launch(protocol, self.reactor.seconds(), stderr_tail is not None)
        write_ends: list[int] = []
        try:
            for fd in () if stderr_tail is not None else (1, 2) if stdout else (2,):
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

    def _start(self) -> _ControlSocket:
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
        self._control = _ControlSocket(self.reactor, ours, self)
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
            self._running[pid] = _LaunchedProcess(self.reactor, launch.protocol, pid,
                                                  launch.pipes, launch.collected)
            launch.started.callback(None)
            return
        pid = message["pid"]
        if "status" in message:
            process = self._running.pop(pid, None)
            if process is None:
                return
            process.group_alive = bool(message["group"])
            process.exited(_reason(message["status"]))
        else:
            process = self._ending.pop(pid, None)
        if process is None:
            return
        if "stderr" in message:
            self._ending.pop(pid, None)
            process.output_ended(message["stderr"].encode("latin-1"))
        elif process.awaiting_output:
            self._ending[pid] = process  # its stderr's end is reported later

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

    def _lost(self, control: _ControlSocket) -> None:
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
