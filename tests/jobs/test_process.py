"""How a job process starts: its own process group, its directory, exactly its environment and
descriptors, default signal handling, and the program found on the job's PATH."""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from runnergw.jobs.launcher import JobLauncher
from runnergw.jobs.process import start_job

_REPORT = """\
import json, os
print(json.dumps({
    "pid": os.getpid(), "pgrp": os.getpgrp(), "cwd": os.getcwd(),
    "env": dict(os.environ), "fds": sorted(int(n) for n in os.listdir("/proc/self/fd")),
    "stdin": os.readlink("/proc/self/fd/0"),
}))
"""


class SpawnTests(TestCase):
    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).absolute()
        self.directory.mkdir(parents=True)
        self.script = self.directory / "report.py"
        self.script.write_text(_REPORT)
        self.environment = {"PATH": "/usr/bin:/bin", "ONLY": "this"}
        self.launcher = JobLauncher(reactor)
        self.addCleanup(self.launcher.stop)

    async def report(self, **overrides: Any) -> dict[str, Any]:
        job = await start_job(self.launcher, reactor,
                              [sys.executable, "-I", str(self.script)],
                              overrides.get("directory", str(self.directory)),
                              overrides.get("environment", self.environment), 30.0,
                              stdout_limit=1 << 16)
        result = await job.result
        self.assertEqual(result.exit_code, 0, result.stderr_tail)
        return json.loads(result.stdout_tail)

    async def test_job_leads_a_process_group_of_its_own(self) -> None:
        seen = await self.report()
        self.assertEqual(seen["pgrp"], seen["pid"])
        self.assertNotEqual(seen["pgrp"], os.getpgrp())

    async def test_job_runs_in_its_directory(self) -> None:
        seen = await self.report()
        self.assertEqual(seen["cwd"], str(self.directory))

    async def test_job_gets_exactly_its_environment(self) -> None:
        os.environ["RUNNERGW_TEST_SECRET"] = "gateway only"
        self.addCleanup(os.environ.pop, "RUNNERGW_TEST_SECRET")
        seen = await self.report()
        # The interpreter may add LC_CTYPE on its own; nothing of the gateway's comes through.
        seen["env"].pop("LC_CTYPE", None)
        self.assertEqual(seen["env"], self.environment)

    async def test_only_stdio_reaches_the_job(self) -> None:
        readable, writable = os.pipe()
        self.addCleanup(os.close, readable)
        self.addCleanup(os.close, writable)
        os.set_inheritable(writable, True)
        seen = await self.report()
        # 0-2, plus the descriptor of the listing itself.
        self.assertEqual(len(seen["fds"]), 4, seen["fds"])
        self.assertEqual(seen["fds"][:3], [0, 1, 2])

    async def test_job_reads_an_empty_stdin(self) -> None:
        self.assertEqual((await self.report())["stdin"], os.devnull)
        job = await start_job(self.launcher, reactor, ["cat"], str(self.directory),
                              self.environment, 30.0)
        result = await job.result
        self.assertEqual((result.exit_code, result.stdout_tail), (0, b""))

    async def test_signals_ignored_by_the_gateway_or_the_launcher_are_default_in_the_job(
            self) -> None:
        # Python ignores SIGPIPE (a job that inherited that would not stop on a closed pipe);
        # the launcher ignores INT, HUP, TERM and QUIT, which a job must obey.
        self.assertEqual(signal.getsignal(signal.SIGPIPE), signal.SIG_IGN)
        job = await start_job(self.launcher, reactor, ["cat", "/proc/self/status"],
                              str(self.directory), self.environment, 30.0,
                              stdout_limit=1 << 16)
        result = await job.result
        ignored = next(line for line in result.stdout_tail.decode().splitlines()
                       if line.startswith("SigIgn:"))
        mask = int(ignored.split()[1], 16)
        for signum in (signal.SIGPIPE, signal.SIGINT, signal.SIGHUP, signal.SIGTERM,
                       signal.SIGQUIT):
            self.assertFalse(mask & (1 << (signum - 1)), f"{signum!r}: {ignored}")

    async def test_a_bare_program_name_is_found_on_the_jobs_path(self) -> None:
        tools = self.directory / "tools"
        tools.mkdir()
        program = tools / "runnergw-test-tool"
        program.write_text("#!/bin/sh\necho from-job-path\n")
        program.chmod(0o755)
        job = await start_job(self.launcher, reactor, ["runnergw-test-tool"],
                              str(self.directory), {"PATH": f"{tools}:/usr/bin:/bin"}, 30.0)
        result = await job.result
        self.assertEqual(result.stdout_tail, b"from-job-path\n")

    async def test_a_program_missing_from_the_jobs_path_cannot_start(self) -> None:
        with self.assertRaises(FileNotFoundError):
            await start_job(self.launcher, reactor, ["python3"], str(self.directory),
                            {"PATH": "/nowhere"}, 30.0)

    async def test_without_a_stdout_limit_stdout_goes_to_dev_null(self) -> None:
        job = await start_job(self.launcher, reactor,
                              ["python3", "-c", "import os, sys; print('unseen'); "
                               "sys.stderr.write(os.readlink('/proc/self/fd/1'))"],
                              str(self.directory), self.environment, 30.0, stdout_limit=0)
        result = await job.result
        self.assertEqual((result.exit_code, result.stderr_tail, result.stdout_tail),
                         (0, b"/dev/null", b""))
