"""A real ``twistd runnergw`` reloaded by a real SIGHUP while a model's jobs run: its
``concurrency`` still counts them, so the requests that come after the reload wait."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from tests.helpers.clients import BytesProducer, fetch
from tests.helpers.command_gateway import SERVER_ID
from tests.helpers.job_control import JobControl, RunningJob, kill_at_cleanup
from tests.helpers.saas import TestSaas, input_form, multipart_body
from tests.helpers.twistd import TwistdProcess, spawn_twistd

__all__ = ["JobLimitAcrossSighupTests"]


class JobLimitAcrossSighupTests(TestCase):
    """``concurrency: 2``: two jobs run, SIGHUP, two more requests."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.control = JobControl(self)
        models = self.directory / "models"
        models.mkdir()
        (models / "wait.json").write_text(json.dumps(self.control.descriptor("wait")))
        self.saas = TestSaas(self.directory / "keys")
        self.config = self.directory / "settings.yaml"
        self.document: dict[str, Any] = {
            "server": {"address": "127.0.0.1:0"},
            "audit": {"path": ""},
            "metrics": {"address": "127.0.0.1:0"},
            "shutdown": {"readinessDelay": "0s", "grace": "5s"},
            "pipelines": {
                "modelsPath": str(models), "jobsPath": str(self.directory / "jobs"),
                "saasPublicKeyPath": str(self.saas.public_path),
                "nodePrivateKeyPath": str(self.saas.node_private_path),
                "serverId": SERVER_ID, "timeout": "30s",
                "models": {"wait": {"concurrency": 2, "queueSize": 4}},
            },
        }
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.addCleanup(pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=pool)

    async def start(self) -> None:
        self.config.write_text(yaml.safe_dump(self.document))
        process = TwistdProcess()
        spawn_twistd(self, process, self.config, directory=self.directory)
        self.metrics_url = await process.metrics_listening
        self.url = await process.listening
        self.process = process

    def post(self, tag: str) -> Deferred[int]:
        """A request for the job tagged ``tag``; fires with the answer's status."""
        body, content_type = multipart_body({"input_form": input_form({"tag": tag})}, {})
        headers = {**self.saas.headers(), "Content-Type": content_type}

        async def send() -> int:
            response, _ = await fetch(self.agent, "POST", f"{self.url}/wait/", headers,
                                      BytesProducer(body))
            return int(response.code)

        return Deferred.fromCoroutine(send())

    async def started(self) -> RunningJob:
        job = await self.control.next()
        kill_at_cleanup(self, job.pid)
        return job

    async def figures(self) -> tuple[float, float]:
        """The model's jobs running and requests waiting, as ``/metrics`` shows them."""
        _, data = await fetch(self.agent, "GET", f"{self.metrics_url}/metrics")
        values: dict[str, float] = {}
        for family in text_string_to_metric_families(data.decode()):
            for sample in family.samples:
                if sample.labels.get("route") == "wait":
                    values[sample.name] = sample.value
        return (values.get("runnergw_pipeline_jobs_running", 0.0),
                values.get("runnergw_pipeline_queue_depth", 0.0))

    async def until_waiting(self, count: int, started: int) -> tuple[float, float]:
        """The figures once ``count`` requests wait for a job slot, or once more than
        ``started`` jobs started (the test's timeout bounds the wait)."""
        while True:
            figures = await self.figures()
            if figures[1] >= count or len(self.control.started_tags()) > started:
                return figures
            await deferLater(reactor, 0.05, lambda: None)

    async def test_limit_holds_across_sighup(self) -> None:
        """The two requests sent after the reload wait for the two jobs started before it
        (none runs beside them), and each starts as one of those ends."""
        await self.start()
        first = {"a": self.post("a"), "b": self.post("b")}
        running = {job.tag: job for job in [await self.started(), await self.started()]}
        reloaded = self.process.next_event("reloaded", "reload_refused")
        os.kill(self.process.transport.pid, signal.SIGHUP)  # type: ignore[union-attr]
        self.assertEqual((await reloaded)["event"], "reloaded")
        later = [self.post("c"), self.post("d")]
        self.assertEqual(await self.until_waiting(2, started=2), (2.0, 2.0))
        self.assertEqual(self.control.started_tags(), {"a", "b"})
        running["a"].go()
        self.assertEqual(await first["a"], 200)
        third = await self.started()
        self.assertEqual(len(self.control.started_tags()), 3)
        running["b"].go()
        self.assertEqual(await first["b"], 200)
        fourth = await self.started()
        self.assertEqual({third.tag, fourth.tag}, {"c", "d"})
        third.go()
        fourth.go()
        self.assertEqual([await answer for answer in later], [200, 200])
