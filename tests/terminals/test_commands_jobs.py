"""Running jobs: failures, timeouts, clients that leave, the slot a killed job holds, and
process groups; also the job harness the queue tests share.

The test model is a small Python script that reports to the test over a loopback socket
(its pid, its child's pid, its tag) and then waits for the test to say ``go``: every step is
an event the test waits on, never a guess about how long something takes.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import attrs
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue, succeed
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineOnlyReceiver
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from runnergw.pipelines import launcher, process
from tests.terminals.support import raw_connect
from tests.terminals.test_commands import (
    FAILED,
    TIMED_OUT,
    Pipelines,
    decode_data_uri,
    descriptor,
    start_pipelines,
)

_SCRIPT = r'''
import json, os, signal, socket, subprocess, sys
port, markers, tag, out, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5]
child = None
if mode in ("child", "stubborn-child", "leave-child", "escape"):
    ignore = mode == "stubborn-child"
    child = subprocess.Popen(["sleep", "60"], start_new_session=mode == "escape", preexec_fn=(
        (lambda: signal.signal(signal.SIGTERM, signal.SIG_IGN)) if ignore else None)).pid
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
info = json.dumps({"pid": os.getpid(), "child": child, "tag": tag})
open(os.path.join(markers, tag), "w").write(info)
connection = socket.create_connection(("127.0.0.1", port))
connection.sendall(info.encode() + b"\n")
if mode in ("leave-child", "escape"):
    open(out, "w").write(tag)
    sys.exit(0)
if connection.makefile("rb").readline().strip() != b"go":
    sys.exit(7)
open(out, "w").write(tag)
'''


@attrs.define(eq=False)
class RunningJob:
    """A job that reported in; ``go()`` lets it write its output and exit."""

    info: dict[str, Any]
    connection: _Report
    closed: Deferred[None] = attrs.field(factory=Deferred)

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def tag(self) -> str:
        return str(self.info["tag"])

    def go(self) -> None:
        self.connection.sendLine(b"go")


class _Report(LineOnlyReceiver):
    delimiter = b"\n"
    job: RunningJob | None = None

    def lineReceived(self, line: bytes) -> None:
        self.job = RunningJob(json.loads(line), self)
        self.factory.control.started(self.job)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.control.connections.discard(self)
        if self.job is not None:
            self.job.closed.callback(None)


class JobControl(Factory):
    """Listens for the test model's reports; ``next()`` fires with the next job that started."""

    protocol = _Report

    def __init__(self, testcase: TestCase) -> None:
        self.control = self
        self.jobs: DeferredQueue[RunningJob] = DeferredQueue()
        self.connections: set[_Report] = set()
        self.noisy = False
        self.markers = Path(testcase.mktemp()).absolute()
        self.markers.mkdir(parents=True)
        self.script = self.markers.parent / "job.py"
        self.script.write_text(_SCRIPT)
        self.port = reactor.listenTCP(0, self, interface="127.0.0.1")
        testcase.addCleanup(self.close)

    def buildProtocol(self, addr: Any) -> _Report:
        connection = super().buildProtocol(addr)
        self.connections.add(connection)
        return connection

    def started(self, job: RunningJob) -> None:
        self.jobs.put(job)

    def next(self) -> Deferred[RunningJob]:
        return self.jobs.get().addTimeout(10, reactor)

    def command(self) -> str:
        return (f"python3 {self.script} {self.port.getHost().port} {self.markers} "
                "<tag> <result> <mode>")

    def descriptor(self, endpoint: str) -> dict[str, Any]:
        return descriptor(endpoint, self.command(), fields=[
            {"id": "tag", "type": "text", "default": "job"},
            {"id": "mode", "type": "text", "default": "plain"}])

    def started_tags(self) -> set[str]:
        """The tags of every job that started (each leaves a marker file)."""
        return set(os.listdir(self.markers))

    def marker(self, tag: str) -> dict[str, Any]:
        """What the job tagged ``tag`` wrote when it started: its pid, its child's."""
        info: dict[str, Any] = json.loads((self.markers / tag).read_text())
        return info

    async def close(self) -> None:
        waiting = []
        for connection in list(self.connections):
            if connection.job is not None:
                waiting.append(connection.job.closed)
            connection.transport.abortConnection()
        for closed in waiting:
            await closed
        await self.port.stopListening()


class _PidFd:
    """Reactor reader on a pidfd: readable once the process has exited."""

    def __init__(self, fd: int, done: Deferred[None]) -> None:
        self.fd = fd
        self.done = done

    def fileno(self) -> int:
        return self.fd

    def logPrefix(self) -> str:
        return "pidfd"

    def doRead(self) -> None:
        self.stop()
        self.done.callback(None)

    def stop(self) -> None:
        reactor.removeReader(self)
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def connectionLost(self, reason: Failure) -> None:
        self.stop()


def process_gone(pid: int, timeout: float = 5.0) -> Deferred[None]:
    """Fires when process ``pid`` has exited (a zombie counts as exited)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return succeed(None)
    reader: _PidFd

    def cancel(_: Deferred[None]) -> None:
        reader.stop()

    done: Deferred[None] = Deferred(cancel)
    reader = _PidFd(fd, done)
    reactor.addReader(reader)
    return done.addTimeout(timeout, reactor)


def kill_at_cleanup(testcase: TestCase, pid: int | None) -> None:
    """Whatever happens, a test's stray process does not outlive it."""
    def kill() -> None:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    testcase.addCleanup(kill)


class FailureTests(TestCase):
    """A command that fails: 400 with the end of its stderr."""

    timeout = 20

    async def test_non_zero_exit(self) -> None:
        pipelines = start_pipelines(self, {"fails": descriptor(
            "fails", "python3 -c 'import sys; sys.stderr.write(\"start\" + \"boom\" * 2000); "
            "sys.exit(3)' <result>")})
        answer = await pipelines.post("fails")
        self.assertEqual(answer.status, 400, answer.body)
        [detail] = answer.json.values()
        self.assertTrue(detail.startswith(FAILED + "boom"), detail[:40])
        self.assertTrue(detail.endswith("boom"))
        self.assertLess(len(detail), 2100)
        self.assertNotIn("start", detail)
        record = await pipelines.settled(1)
        self.assertEqual((record["outcome"], record["exit_code"]), ("command_failed", 3))

    async def test_missing_program(self) -> None:
        pipelines = start_pipelines(self, {"nothing": descriptor(
            "nothing", "no-such-program-here <result>")})
        answer = await pipelines.post("nothing")
        self.assertEqual(answer.status, 400, answer.body)
        self.assertIn("no-such-program-here", answer.json["detail"])
        await pipelines.settled(1)


class KillTests(TestCase):
    """Jobs over their time, and jobs whose client left, are killed with their children."""

    timeout = 20

    def setUp(self) -> None:
        self.control = JobControl(self)
        self.pipelines: Pipelines = start_pipelines(
            self, {"wait": self.control.descriptor("wait"),
                   "hold": self.control.descriptor("hold")},
            models={"wait": {"timeout": "1s", "concurrency": 1, "queueSize": 1},
                    "hold": {"timeout": "10s", "concurrency": 1, "queueSize": 1}})

    async def started(self) -> RunningJob:
        job = await self.control.next()
        kill_at_cleanup(self, job.pid)
        kill_at_cleanup(self, job.info["child"])
        return job

    async def timed_out(self, mode: str) -> dict[str, Any]:
        """Run a job that never finishes on the 1 s model; what it reported at its start."""
        answer = await self.pipelines.post("wait", {"mode": mode})
        self.assertEqual((answer.status, answer.json), (408, {"detail": TIMED_OUT}))
        info = self.control.marker("job")
        kill_at_cleanup(self, info["pid"])
        kill_at_cleanup(self, info["child"])
        return info

    async def test_timeout(self) -> None:
        """408 ``Command timed out``; the job and the child it started are gone."""
        info = await self.timed_out("child")
        await process_gone(info["pid"])
        await process_gone(info["child"])
        record = await self.pipelines.settled(1)
        self.assertEqual((record["outcome"], record["status"]), ("timeout", 408))

    async def test_timeout_kills_a_child_that_ignores_sigterm(self) -> None:
        info = await self.timed_out("stubborn-child")
        await process_gone(info["pid"])
        await process_gone(info["child"])
        await self.pipelines.settled(1)

    async def test_finished_job_leaves_no_child_behind(self) -> None:
        """A command that exits leaving a helper (holding its stderr) is answered at once."""
        answering = Deferred.fromCoroutine(self.pipelines.post("hold", {"mode": "leave-child"}))
        job = await self.started()
        answer = await answering
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(decode_data_uri(answer.json["outputs"]["result"])[1], b"job")
        await process_gone(job.info["child"])
        await self.pipelines.settled(1)

    async def test_helper_in_its_own_session_does_not_hold_the_reply(self) -> None:
        """A helper that left the group keeps the pipes open: they are closed after a grace."""
        self.patch(process, "PIPE_GRACE", 0.2)
        answering = Deferred.fromCoroutine(self.pipelines.post("hold", {"mode": "escape"}))
        job = await self.started()
        answer = await answering
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(decode_data_uri(answer.json["outputs"]["result"])[1], b"job")
        await self.pipelines.settled(1)
        self.assertTrue(_alive(job.info["child"]), "outside the group: not the gateway's to kill")

    async def test_next_job_starts_once_the_command_has_exited(self) -> None:
        """The slot is free as soon as the command is gone and nothing of its group is left:
        a helper that left the group and holds the pipes does not hold the next job."""
        self.patch(process, "PIPE_GRACE", 600.0)
        first_answer = Deferred.fromCoroutine(self.pipelines.post("hold", {"mode": "escape"}))
        first = await self.started()
        second_answer = Deferred.fromCoroutine(self.pipelines.post("hold", {"tag": "second"}))
        second = await self.started()
        self.assertEqual(second.tag, "second")
        self.assertFalse(first_answer.called, "the first reply waits for its pipes")
        second.go()
        self.assertEqual((await second_answer).status, 200)
        os.kill(first.info["child"], signal.SIGKILL)  # the pipes close: the first reply ends
        self.assertEqual((await first_answer).status, 200)
        await self.pipelines.settled(2)

    async def test_a_job_whose_launcher_died_is_killed_and_answered_500(self) -> None:
        """The node's failure, not the program's: 500, logged; the next job starts a new
        launcher."""
        answer = Deferred.fromCoroutine(self.pipelines.post("hold", {"mode": "child"}))
        job = await self.started()
        job_launcher = self.pipelines.terminal("hold").context.launcher
        assert job_launcher._process is not None
        os.kill(job_launcher._process.transport.pid, signal.SIGKILL)
        await process_gone(job.pid)
        await process_gone(job.info["child"])
        lost = await answer
        self.assertEqual((lost.status, lost.json), (500, {"detail": "The job was lost"}))
        record = await self.pipelines.settled(1)
        self.assertEqual(record["outcome"], "error")
        # The next launcher starts a second after the last one died, at the soonest.
        busy = await self.pipelines.post("hold", {"tag": "too-soon"})
        self.assertEqual(busy.status, 503)
        self.assertEqual(busy.headers.getRawHeaders("retry-after"), ["10"])
        self.patch(launcher, "RESTART_DELAY", 0.0)
        again = Deferred.fromCoroutine(self.pipelines.post("hold", {"tag": "again"}))
        (await self.started()).go()
        self.assertEqual((await again).status, 200)

    async def test_client_leaving_kills_the_job(self) -> None:
        client = await raw_connect(self, self.pipelines.gateway)
        client.send(self.pipelines.raw_request("hold", {"mode": "child"}))
        job = await self.started()
        await client.close()
        await process_gone(job.pid)
        await process_gone(job.info["child"])
        record = await self.pipelines.settled(1)
        self.assertEqual(record["outcome"], "client_gone")
        self.assertIs(record["job_killed"], True)
        self.assertEqual(client.data, b"")

    async def test_killed_job_holds_its_slot_until_it_is_gone(self) -> None:
        """One GPU, one job: the next job starts only once the killed one has exited."""
        self.patch(process, "KILL_GRACE", 0.5)
        client = await raw_connect(self, self.pipelines.gateway)
        client.send(self.pipelines.raw_request("hold", {"mode": "stubborn", "tag": "first"}))
        first = await self.started()
        terminal = self.pipelines.terminal("hold")
        queued = when_queued(self, terminal)
        answering = Deferred.fromCoroutine(self.pipelines.post("hold", {"tag": "second"}))
        await queued
        await client.close()
        second = await self.started()
        self.assertEqual(second.tag, "second")
        self.assertFalse(_alive(first.pid), "the next job started beside the killed one")
        second.go()
        self.assertEqual((await answering).status, 200)
        await self.pipelines.settled(2)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def when_queued(testcase: TestCase, terminal: Any) -> Deferred[None]:
    """Fires once a request is waiting in the terminal's queue."""
    slots = terminal.slots
    original = slots.acquire
    queued: Deferred[None] = Deferred()

    def acquire() -> Any:
        waiter = original()
        if slots.waiting and not queued.called:
            queued.callback(None)
        return waiter

    testcase.patch(slots, "acquire", acquire)
    return queued
