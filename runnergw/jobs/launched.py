"""The gateway's end of the job launcher's socket, and the transport of a launched job.

``ControlSocket`` sends the launcher its requests, with the pipes they name (kept open until
sent), and hands its answers to the launcher's owner. ``LaunchedProcess`` gives a job's
``ProcessProtocol`` what Twisted's own process transport gives it, from those answers and
from the job's pipes when the gateway reads them.
"""

from __future__ import annotations

import array
import errno
import json
import os
import socket
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet import abstract
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.main import CONNECTION_DONE, CONNECTION_LOST
from twisted.internet.process import ProcessReader
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

__all__ = ["MAX_STDERR_TAIL", "ControlSocket", "LaunchedProcess", "PendingLaunch", "exit_reason"]

_RECEIVE_SIZE = 1 << 16
"""The launcher's messages are a few dozen bytes, or a few KiB with a stderr tail."""
MAX_STDERR_TAIL = _RECEIVE_SIZE // 8
"""The largest stderr tail the launcher may be asked for: as latin-1 in JSON, each byte takes
up to six (a \\u escape), and the message must fit the receive buffer."""


def exit_reason(status: int) -> BaseException:
    """How a wait status ended a process, as Twisted's process transport says it."""
    if os.WIFEXITED(status):
        code = os.WEXITSTATUS(status)
        return ProcessDone(status) if code == 0 else ProcessTerminated(code, None, status)
    return ProcessTerminated(None, os.WTERMSIG(status), status)


class LaunchedProcess:
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
        self.number = -1
        """The number of the request that started the job (the launcher's name for it)."""
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


class PendingLaunch:
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


class ControlSocket(abstract.FileDescriptor):
    """The gateway's end of the socket to the launcher: requests go out with the pipes they
    name (kept open until sent), answers come in as datagrams."""

    def __init__(self, reactor: Any, sock: socket.socket,
                 answered: Callable[[dict[str, Any]], None],
                 refused: Callable[[int, OSError], None],
                 lost: Callable[[ControlSocket], None]) -> None:
        """``answered`` gets each answer; ``refused`` a request number the socket would not
        take, with the reason; ``lost`` this socket once it is closed."""
        super().__init__(reactor)
        self.socket = sock
        self.answered = answered
        self.refused = refused
        self.lost = lost
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
                self.refused(number, refusal)
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
            self.answered(json.loads(buffer[:size]))
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
        self.lost(self)
