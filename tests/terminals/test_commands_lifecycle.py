"""A job's environment, and jobs when the gateway stops."""

from __future__ import annotations

import os

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from runnergw.pipelines import process
from tests.terminals.test_commands import decode_data_uri, descriptor, start_pipelines
from tests.terminals.test_commands_jobs import JobControl, kill_at_cleanup, process_gone


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
