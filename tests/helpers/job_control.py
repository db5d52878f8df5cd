"""A test model that reports to the test as it runs, and ways to watch jobs and processes.

The model is a small Python script that reports to the test over a loopback socket (its pid,
its child's pid, its tag) and then waits for the test to say ``go``: every step is an event
the test waits on, never a guess about how long something takes.
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

from tests.helpers.command_gateway import descriptor

__all__ = ["JobControl", "RunningJob", "kill_at_cleanup", "process_gone", "when_queued"]


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
