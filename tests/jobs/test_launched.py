"""A launched job as its ``ProcessProtocol`` sees it, and the gateway's end of the launcher's
socket: exit statuses read as Twisted reads them, the end reported once exit and output are
both over, pipes closed once sent, answers handed on."""

from __future__ import annotations

import array
import errno
import json
import os
import signal
import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.jobs.launched import ControlSocket, LaunchedProcess, PendingLaunch, exit_reason

__all__ = ["ControlSocketTests", "ExitReasonTests", "LaunchedProcessTests", "PendingLaunchTests"]


class ExitReasonTests(SynchronousTestCase):
    """A wait status becomes what Twisted's own process transport reports."""

    def test_exit_zero_is_done(self) -> None:
        """A command that exits 0 ended normally."""
        self.assertIsInstance(exit_reason(0), ProcessDone)

    def test_other_exit_codes_are_terminated_with_the_code(self) -> None:
        """A command that exits 3 is terminated with exit code 3 and no signal."""
        reason = exit_reason(3 << 8)
        self.assertIsInstance(reason, ProcessTerminated)
        assert isinstance(reason, ProcessTerminated)
        self.assertEqual((reason.exitCode, reason.signal), (3, None))

    def test_a_signal_is_named(self) -> None:
        """A command killed by SIGKILL is terminated by that signal, with no exit code."""
        reason = exit_reason(signal.SIGKILL)
        assert isinstance(reason, ProcessTerminated)
        self.assertEqual((reason.exitCode, reason.signal), (None, signal.SIGKILL))


class _Recorder(ProcessProtocol):
    """Records what a job's protocol is told, in order."""

    def __init__(self) -> None:
        self.events: list[Any] = []

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.events.append(("data", childFD, data))

    def processExited(self, reason: Failure) -> None:
        self.events.append(("exited", type(reason.value)))

    def processEnded(self, reason: Failure) -> None:
        self.events.append(("ended", type(reason.value)))


class LaunchedProcessTests(SynchronousTestCase):
    """A job whose stderr the launcher reads: no pipes at the gateway."""

    def launched(self) -> tuple[LaunchedProcess, _Recorder]:
        recorder = _Recorder()
        return LaunchedProcess(None, recorder, 1234, {}, collected=True), recorder

    def test_connected_with_its_pid(self) -> None:
        """The protocol is connected at once to a transport that knows the job's pid."""
        process, recorder = self.launched()
        self.assertIs(recorder.transport, process)
        self.assertEqual(process.pid, 1234)

    def test_ended_once_exit_and_stderr_are_both_over(self) -> None:
        """An exit reported before the stderr tail: the end waits for the tail."""
        process, recorder = self.launched()
        process.exited(ProcessDone(0))
        self.assertEqual(recorder.events, [("exited", ProcessDone)])
        process.output_ended(b"warning\n")
        self.assertEqual(recorder.events, [("exited", ProcessDone), ("data", 2, b"warning\n"),
                                           ("ended", ProcessDone)])

    def test_stderr_before_the_exit(self) -> None:
        """A stderr that ended first is handed on; the end follows the exit."""
        process, recorder = self.launched()
        process.output_ended(b"")
        self.assertEqual(recorder.events, [])
        process.exited(ProcessTerminated(3))
        self.assertEqual(recorder.events, [("exited", ProcessTerminated),
                                           ("ended", ProcessTerminated)])

    def test_told_once(self) -> None:
        """A second exit or output report (a lost launcher after the real one) is ignored."""
        process, recorder = self.launched()
        process.exited(ProcessDone(0))
        process.output_ended(b"x")
        process.exited(ProcessTerminated(1))
        process.output_ended(b"y")
        self.assertEqual([event[0] for event in recorder.events], ["exited", "data", "ended"])


class PendingLaunchTests(SynchronousTestCase):
    """A launch not answered yet holds the gateway's ends of the job's pipes."""

    def test_close_releases_the_pipes(self) -> None:
        """Closing a failed launch closes the read ends it held."""
        launch = PendingLaunch(ProcessProtocol(), 0.0, collected=False)
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, write_end)
        launch.pipes[1] = read_end
        launch.close()
        self.assertRaises(OSError, os.fstat, read_end)


class ControlSocketTests(TestCase):
    """The gateway's end of the socket, with a test standing in for the launcher."""

    timeout = 10

    def setUp(self) -> None:
        ours, self.theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        ours.setblocking(False)
        self.addCleanup(self.theirs.close)
        self.answers: list[dict[str, Any]] = []
        self.refusals: list[tuple[int, int | None]] = []
        self.closed: Deferred[ControlSocket] = Deferred()
        self.control = ControlSocket(
            reactor, ours, self.answers.append,
            lambda number, error: self.refusals.append((number, error.errno)),
            self.closed.callback)
        self.addCleanup(self.control.close)

    def test_a_request_goes_out_with_its_pipes_which_are_then_closed(self) -> None:
        """The launcher receives the request and the pipe; the gateway's copy is closed."""
        read_end, write_end = os.pipe()
        self.addCleanup(os.close, read_end)
        self.control.send(7, b'{"id":7}', (write_end,))
        data, ancillary, _, _ = self.theirs.recvmsg(1024, socket.CMSG_SPACE(4))
        self.assertEqual(data, b'{"id":7}')
        [(_, _, fds)] = ancillary
        received = array.array("i", fds)[0]
        os.write(received, b"through")
        os.close(received)
        self.assertEqual(os.read(read_end, 16), b"through")
        self.assertRaises(OSError, os.fstat, write_end)

    def test_a_request_too_large_is_refused_by_number(self) -> None:
        """A request the socket cannot take is refused as too large, not lost."""
        size = self.theirs.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        self.control.send(8, b"x" * (size * 4), ())
        self.assertEqual(self.refusals, [(8, errno.E2BIG)])

    async def test_answers_are_handed_on_and_the_end_is_noticed(self) -> None:
        """Each datagram is one decoded answer; the launcher closing its end is noticed."""
        answered: Deferred[None] = Deferred()
        self.control.answered = lambda message: (self.answers.append(message),
                                                 answered.callback(None))
        self.theirs.send(json.dumps({"id": 1, "pid": 42}).encode())
        await answered
        self.assertEqual(self.answers, [{"id": 1, "pid": 42}])
        self.theirs.close()
        self.assertIs(await self.closed, self.control)
