"""A job's environment, and jobs when the gateway stops."""

from __future__ import annotations

import errno
import os
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import TestCase

from runnergw.jobs import process
from runnergw.terminals.commands import reply, terminal, uploads
from tests.helpers.command_gateway import decode_data_uri, descriptor, example, start_pipelines
from tests.helpers.job_control import (
    JobControl,
    kill_at_cleanup,
    process_gone,
    when_queued,
)


class ShutdownTests(TestCase):
    """A job running when the gateway stops is killed with its children at once."""

    timeout = 20

    async def test_stopping_kills_running_jobs(self) -> None:
        """Even a job that ignores SIGTERM is gone: no reactor timer is left to KILL it."""
        # After a real shutdown the reactor stops: the TERM-then-KILL timer would never fire.
        self.patch(process, "KILL_GRACE", 600.0)
        control = JobControl(self)
        pipelines = start_pipelines(self, {"hold": control.descriptor("hold")},
                                    models={"hold": {"timeout": "10s"}})
        answering = Deferred.fromCoroutine(pipelines.post("hold", {"mode": "stubborn"}))
        answering.addErrback(lambda _: None)  # the connection is dropped by the shutdown
        job = await control.next()
        kill_at_cleanup(self, job.pid)
        await pipelines.gateway.service.stopService()
        await process_gone(job.pid)
        await answering

    async def test_a_queued_job_never_starts_once_stopping(self) -> None:
        """The killed job frees its slot while the gateway stops: the one in line must not
        take it (no timer would be left to kill it)."""
        control = JobControl(self)
        pipelines = start_pipelines(self, {"hold": control.descriptor("hold")},
                                    models={"hold": {"timeout": "10s", "queueSize": 1}})
        running = Deferred.fromCoroutine(pipelines.post("hold", {"tag": "running"}))
        running.addErrback(lambda _: None)
        job = await control.next()
        kill_at_cleanup(self, job.pid)
        queued = when_queued(self, pipelines.terminal("hold"))
        waiting = Deferred.fromCoroutine(pipelines.post("hold", {"tag": "waiting"}))
        await queued
        # What stopping the service does first, before the connections close.
        stopped = pipelines.terminal("hold").stop()
        await process_gone(job.pid)
        answer = await waiting
        self.assertEqual((answer.status, answer.json),
                         (503, {"detail": "the gateway is shutting down"}))
        await running
        await stopped
        self.assertEqual(control.started_tags(), {"running"})


class EnvironmentTests(TestCase):
    """What a job finds in its environment."""

    timeout = 20

    async def test_clean_environment_plus_the_operators_variables(self) -> None:
        """pipelines.environment reaches the job; the gateway's own variables do not."""
        self.patch(os, "environ", {**os.environ, "PASETO_SECRET_KEY": "f" * 64})
        command = ("python3 -c 'import os, sys; open(sys.argv[1], \"w\").write("
                   "os.environ.get(\"MODEL_HOME\", \"-\") + \"|\" + "
                   "str(\"PASETO_SECRET_KEY\" in os.environ) + \"|\" + os.getcwd())' <result>")
        pipelines = start_pipelines(self, {"env": descriptor("env", command)},
                                    environment={"MODEL_HOME": "/opt/models"})
        answer = await pipelines.post("env", {})
        self.assertEqual(answer.status, 200, answer.body)
        home, secret_seen, cwd = decode_data_uri(
            answer.json["outputs"]["result"])[1].decode().split("|")
        self.assertEqual((home, secret_seen), ("/opt/models", "False"))
        self.assertTrue(os.path.basename(cwd).startswith("job-"), cwd)
        await pipelines.settled(1)

class UnknownPathTests(TestCase):
    """A node serving only pipelines answers unknown paths in FastAPI's shape."""

    timeout = 20

    async def test_unknown_path_is_a_detail_404(self) -> None:
        """No runner configured: ``/nothing/`` is 404 ``{"detail": …}``."""
        pipelines = start_pipelines(self, {"env": descriptor("env", "true <result>")})
        answer = await pipelines.post("nothing", {})
        self.assertEqual(answer.status, 404)
        self.assertEqual(list(answer.json), ["detail"])
        await pipelines.settled(1)


class StorageTests(TestCase):
    """A jobs directory that cannot take an upload."""

    timeout = 20

    async def test_full_disk_is_a_507(self) -> None:
        """ENOSPC while storing the upload answers 507, leaves no job directory behind."""
        status, body, _ = await post_failing(self, uploads, "_create", errno.ENOSPC)
        self.assertEqual((status, body), (507, {"detail": "The node has no room for the upload"}))

    async def test_other_storage_failures_are_named(self) -> None:
        """Too many open files is worth a retry (503); a read-only or failing disk is a 500
        that says the upload could not be stored, and the log says why."""
        cases = [(errno.EMFILE, 503, "The node is busy, try again later"),
                 (errno.EROFS, 500, "The node could not store the upload"),
                 (errno.EIO, 500, "The node could not store the upload")]
        failing = [errno.EMFILE]

        def broken(path: str, flags: int) -> int:
            raise OSError(failing[0], os.strerror(failing[0]), path)

        self.patch(uploads, "_create", broken)
        logged: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(logged.append)
        self.addCleanup(globalLogPublisher.removeObserver, logged.append)
        pipelines = start_pipelines(self, {"text-stats": example("text-stats")})
        for number, (code, status, detail) in enumerate(cases, 1):
            failing[0] = code
            answer = await pipelines.post(
                "text-stats", {"top": 1}, {"document": ("a.txt", "text/plain", b"words")})
            self.assertEqual((answer.status, answer.json), (status, {"detail": detail}))
            record = await pipelines.settled(number)
            self.assertEqual(record["reason"], f"upload storage: {os.strerror(code)}")
        errors = [e for e in logged if e.get("log_level") == LogLevel.error]
        self.assertEqual([e["reason"] for e in errors],
                         [os.strerror(errno.EROFS), os.strerror(errno.EIO)])

    async def test_a_job_directory_that_cannot_be_made(self) -> None:
        """The jobs directory turned unwritable: a 500 naming the storage, no traceback."""
        status, body, record = await post_failing(self, terminal, "make_job_directory",
                                                  errno.EACCES)
        self.assertEqual((status, body), (500, {"detail": "The node could not store the upload"}))
        self.assertEqual(record["reason"], f"job directory: {os.strerror(errno.EACCES)}")


class NodeFailureTests(TestCase):
    """Failures of the node's own, not of the job: never the job's 400, never a signed null."""

    timeout = 20

    async def test_job_start_out_of_descriptors_is_a_503(self) -> None:
        status, body, record = await post_failing(self, terminal, "start_job", errno.EMFILE)
        self.assertEqual((status, body), (503, {"detail": "The node is busy, try again later"}))
        self.assertEqual(record["reason"], f"job start: {os.strerror(errno.EMFILE)}")

    async def test_job_start_failing_otherwise_is_a_500(self) -> None:
        status, body, record = await post_failing(self, terminal, "start_job", errno.EIO)
        self.assertEqual((status, body), (500, {"detail": "The job could not be started"}))
        self.assertEqual(record["outcome"], "error")

    async def test_outputs_the_node_cannot_open_are_not_signed_as_missing(self) -> None:
        status, body, record = await post_failing(self, reply, "_open_output", errno.EIO)
        self.assertEqual((status, body), (500, {"detail": "The outputs could not be read"}))
        self.assertEqual(record["reason"], f"outputs: {os.strerror(errno.EIO)}")
        status, body, _ = await post_failing(self, reply, "_open_output", errno.EMFILE)
        self.assertEqual(status, 503)


async def post_failing(testcase: TestCase, module: Any, name: str,
                       code: int) -> tuple[int, Any, dict[str, Any]]:
    """Make ``module.name`` fail with ``code``, post one text-stats request: its status, its
    body and its audit line (once no job directory is left)."""

    def failing(*args: Any, **kwargs: Any) -> Any:
        raise OSError(code, os.strerror(code))

    testcase.patch(module, name, failing)
    pipelines = start_pipelines(testcase, {"text-stats": example("text-stats")})
    answer = await pipelines.post(
        "text-stats", {"top": 1}, {"document": ("a.txt", "text/plain", b"words")})
    record = await pipelines.settled(1)
    return answer.status, answer.json, record
