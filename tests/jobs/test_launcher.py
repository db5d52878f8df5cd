"""The job launcher process: it starts jobs nicer than the gateway, keeps each job's output
apart, refuses what it cannot send, and when it dies or stops, no job is left running."""

from __future__ import annotations

import errno
import os
import signal
import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

from runnergw.jobs import launcher, process
from runnergw.jobs.launched import PendingLaunch
from runnergw.jobs.launcher import JobLauncher, LauncherLost
from runnergw.jobs.process import Job, start_job
from tests.helpers.job_control import process_gone

_WAIT = """\
import os, sys, time
open("pid", "w").write(str(os.getpid()))
print("started", flush=True)
time.sleep(60)
"""


class LauncherTests(TestCase):
    timeout = 30

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir(parents=True)
        (self.directory / "wait.py").write_text(_WAIT)
        self.environment = {"PATH": "/usr/bin:/bin"}
        self.launcher = JobLauncher(reactor, niceness=5)
        self.addCleanup(self.launcher.stop)

    def launcher_pid(self) -> int:
        process = self.launcher._process
        assert process is not None and process.transport is not None
        return process.transport.pid

    async def waiting_job(self) -> tuple[Job, int]:
        """A job that has started and waits: its pid."""
        job = await start_job(self.launcher, reactor, [sys.executable, "-I", "wait.py"],
                              str(self.directory), self.environment, 30.0)
        # Its pipes are read from the next turn of the event loop on: a hook set now sees
        # its first line, which it prints once its pid is written.
        said: Deferred[None] = Deferred()
        received = job.protocol.outReceived

        def out_received(data: bytes) -> None:
            received(data)
            if not said.called:
                said.callback(None)

        job.protocol.outReceived = out_received  # type: ignore[method-assign]
        await said
        return job, int((self.directory / "pid").read_text())

    async def test_jobs_run_nicer_than_the_gateway(self) -> None:
        job = await start_job(self.launcher, reactor,
                              ["python3", "-c", "import os; print(os.nice(0))"],
                              str(self.directory), self.environment, 30.0)
        result = await job.result
        self.assertEqual(int(result.stdout_tail), min(19, os.nice(0) + 5))

    async def test_each_of_many_jobs_at_once_gets_its_own_output(self) -> None:
        jobs = await gatherResults([
            start_job(self.launcher, reactor, ["printf", f"job {n}"], str(self.directory),
                      self.environment, 30.0)
            for n in range(40)])
        results = await gatherResults([job.result for job in jobs])
        self.assertEqual([r.stdout_tail for r in results],
                         [f"job {n}".encode() for n in range(40)])

    async def test_a_command_too_large_to_send_is_refused_and_nothing_leaks(self) -> None:
        await (await start_job(self.launcher, reactor, ["true"], str(self.directory),
                               self.environment, 30.0)).result
        before = len(os.listdir("/proc/self/fd"))
        with self.assertRaises(OSError) as raised:
            await start_job(self.launcher, reactor, ["printf", "x" * (1 << 20)],
                            str(self.directory), self.environment, 30.0)
        self.assertEqual(raised.exception.errno, errno.E2BIG)
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)
        result = await (await start_job(self.launcher, reactor, ["printf", "still here"],
                                        str(self.directory), self.environment, 30.0)).result
        self.assertEqual(result.stdout_tail, b"still here")

    async def test_the_launcher_holds_nothing_of_the_gateway(self) -> None:
        secret = self.directory / "gateway-only"
        secret.write_text("key")
        kept = os.open(secret, os.O_RDONLY)
        self.addCleanup(os.close, kept)
        os.set_inheritable(kept, True)
        await (await start_job(self.launcher, reactor, ["true"], str(self.directory),
                               self.environment, 30.0)).result
        pid = self.launcher_pid()
        targets = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        self.assertNotIn(str(secret), targets)
        with open(f"/proc/{pid}/environ", "rb") as stream:
            self.assertEqual(stream.read().split(b"\0")[:-1], [])

    async def test_a_dead_launcher_fails_and_kills_its_jobs_and_the_next_starts_anew(
            self) -> None:
        job, pid = await self.waiting_job()
        old = self.launcher_pid()
        os.kill(old, signal.SIGKILL)
        with self.assertRaises(LauncherLost):
            await job.result
        await process_gone(pid)
        # Restarted at most once a second: a launcher that keeps dying is no fork storm.
        with self.assertRaises(BlockingIOError):
            await start_job(self.launcher, reactor, ["true"], str(self.directory),
                            self.environment, 30.0)
        self.patch(launcher, "RESTART_DELAY", 0.0)
        result = await (await start_job(self.launcher, reactor, ["printf", "again"],
                                        str(self.directory), self.environment, 30.0)).result
        self.assertEqual(result.stdout_tail, b"again")
        self.assertNotEqual(self.launcher_pid(), old)

    async def test_stopping_the_launcher_kills_what_runs(self) -> None:
        job, pid = await self.waiting_job()
        launcher_pid = self.launcher_pid()
        await self.launcher.stop()
        with self.assertRaises(LauncherLost):
            await job.result
        await process_gone(pid)
        await process_gone(launcher_pid)
        with self.assertRaises(LauncherLost):
            await start_job(self.launcher, reactor, ["true"], str(self.directory),
                            self.environment, 30.0)

    async def test_signals_meant_for_the_gateway_do_not_stop_the_launcher(self) -> None:
        await (await start_job(self.launcher, reactor, ["true"], str(self.directory),
                               self.environment, 30.0)).result
        pid = self.launcher_pid()
        for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM, signal.SIGQUIT,
                       signal.SIGUSR1, signal.SIGUSR2):
            os.kill(pid, signum)
        result = await (await start_job(self.launcher, reactor, ["printf", "alive"],
                                        str(self.directory), self.environment, 30.0)).result
        self.assertEqual(result.stdout_tail, b"alive")
        self.assertEqual(self.launcher_pid(), pid)

    async def test_launches_pending_when_the_launcher_dies_fail_and_leak_nothing(
            self) -> None:
        await (await start_job(self.launcher, reactor, ["true"], str(self.directory),
                               self.environment, 30.0)).result
        # The launcher's socket and its stdout and stderr pipes.
        before = len(os.listdir("/proc/self/fd")) - 3
        pid = self.launcher_pid()
        assert self.launcher._process is not None
        ended = self.launcher._process.ended
        os.kill(pid, signal.SIGSTOP)
        pending = [start_job(self.launcher, reactor, ["true"], str(self.directory),
                             self.environment, 30.0) for _ in range(3)]
        os.kill(pid, signal.SIGKILL)
        for launch in pending:
            with self.assertRaises(LauncherLost):
                await launch
        await ended
        self.assertEqual(len(os.listdir("/proc/self/fd")), before)

    async def test_a_launch_not_answered_in_time_fails(self) -> None:
        self.patch(launcher, "LAUNCH_TIMEOUT", 0.2)
        await (await start_job(self.launcher, reactor, ["true"], str(self.directory),
                               self.environment, 30.0)).result
        pid = self.launcher_pid()
        os.kill(pid, signal.SIGSTOP)
        self.addCleanup(os.kill, pid, signal.SIGCONT)
        with self.assertRaises(TimeoutError):
            await start_job(self.launcher, reactor, ["true"], str(self.directory),
                            self.environment, 30.0)

    async def test_a_launcher_that_does_not_stop_is_killed(self) -> None:
        self.patch(launcher, "STOP_GRACE", 0.2)
        job, pid = await self.waiting_job()
        launcher_pid = self.launcher_pid()
        os.kill(launcher_pid, signal.SIGSTOP)
        await self.launcher.stop()
        await process_gone(launcher_pid)
        with self.assertRaises(LauncherLost):
            await job.result
        # The jobs of a launcher that was killed are killed by the gateway.
        await process_gone(pid)

    async def test_a_request_the_launcher_cannot_use_is_refused_and_it_lives_on(
            self) -> None:
        for argv in ([], ["printf", "nul\0inside"]):
            with self.assertRaises(OSError) as raised:
                await start_job(self.launcher, reactor, argv, str(self.directory),
                                self.environment, 30.0)
            self.assertEqual(raised.exception.errno, errno.EINVAL, argv)
        result = await (await start_job(self.launcher, reactor, ["printf", "fine"],
                                        str(self.directory), self.environment, 30.0)).result
        self.assertEqual(result.stdout_tail, b"fine")

    async def escaped_helper_job(self) -> tuple[Job, int]:
        """A job (its stderr read by the launcher) that says something and exits, leaving a
        helper in a session of its own that holds its stderr: the helper's pid."""
        script = ("import subprocess, sys\n"
                  "helper = subprocess.Popen(['sleep', '60'], start_new_session=True)\n"
                  "open('helper', 'w').write(str(helper.pid))\n"
                  "sys.stderr.write('said before exiting')\n")
        job = await start_job(self.launcher, reactor, [sys.executable, "-I", "-c", script],
                              str(self.directory), self.environment, 30.0, stdout_limit=0)
        await job.exited
        helper = int((self.directory / "helper").read_text())
        self.addCleanup(_kill, helper)
        return job, helper

    async def test_stderr_held_by_an_escaped_helper_ends_after_the_grace(self) -> None:
        self.patch(process, "PIPE_GRACE", 0.2)
        job, helper = await self.escaped_helper_job()
        result = await job.result
        self.assertEqual((result.exit_code, result.stderr_tail), (0, b"said before exiting"))

    async def test_stderr_awaited_when_the_launcher_dies_does_not_hold_the_job(self) -> None:
        self.patch(process, "PIPE_GRACE", 600.0)
        job, helper = await self.escaped_helper_job()
        self.assertFalse(job.ended.called)
        os.kill(self.launcher_pid(), signal.SIGKILL)
        await job.ended
        self.flushLoggedErrors()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class _Recorder(ProcessProtocol):
    def __init__(self) -> None:
        self.stderr = b""
        self.ended: Deferred[None] = Deferred()

    def errReceived(self, data: bytes) -> None:
        self.stderr += data

    def processEnded(self, reason: object) -> None:
        self.ended.callback(None)


class AnswerRoutingTests(TestCase):
    """The launcher's answers reach the right job, also when a pid has been reused."""

    def test_a_late_stderr_goes_to_its_job_not_to_the_pid_that_took_its_number(self) -> None:
        job_launcher = JobLauncher(reactor)
        first, second = _Recorder(), _Recorder()
        for number, protocol in ((1, first), (2, second)):
            job_launcher._launches[number] = PendingLaunch(protocol, 0.0, True)
        job_launcher._answer({"id": 1, "pid": 4242})
        # The first command exits; a helper that left its group still holds its stderr.
        job_launcher._answer({"pid": 4242, "status": 0, "group": False})
        self.assertFalse(first.ended.called)
        # The number is free: the next job gets it, and ends with its stderr at once.
        job_launcher._answer({"id": 2, "pid": 4242})
        job_launcher._answer({"pid": 4242, "status": 256, "group": False, "stderr": "second"})
        self.assertEqual((second.stderr, second.ended.called), (b"second", True))
        self.assertFalse(first.ended.called)
        job_launcher._answer({"job": 1, "stderr": "first \xe9"})
        self.assertEqual((first.stderr, first.ended.called), (b"first \xe9", True))
