"""A pipeline model's job limits across a reload: the routes a reload replaced and those
that replaced them count their jobs together, so ``concurrency`` and ``queueSize`` hold; a
reload that changes them resizes the model's slots; the status line and the metrics count
the jobs of a route a reload removed until they are over.

The service runs on a memory reactor; jobs are fakes that end when the test says so.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import yaml
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.jobs.process import JobResult
from runnergw.service import GatewayService
from runnergw.terminals.commands import terminal
from runnergw.testing import RecordingClient, make_exchange
from tests.helpers.command_gateway import descriptor
from tests.helpers.node_settings import write_node
from tests.helpers.saas import TestSaas, input_form, multipart_body

__all__ = ["JobCountTests", "JobLimitTests", "RemovedEndpointTests"]


@attrs.define(eq=False)
class _FakeJob:
    """A started job that runs until ``end()``."""

    argv: list[str]
    result: Deferred[JobResult] = attrs.field(factory=Deferred)
    exited: Deferred[None] = attrs.field(factory=Deferred)
    ended: Deferred[None] = attrs.field(factory=Deferred)

    def end(self) -> None:
        """The command exits 0, its pipes close."""
        self.exited.callback(None)
        self.result.callback(JobResult(0, None, False, b"", b""))
        self.ended.callback(None)

    def cancel(self) -> None:
        self.result.cancel()

    def kill_now(self) -> None:
        pass


class _JobSlotsCase(SynchronousTestCase):
    """A gateway serving the ``sleepy`` model (a command that would sleep 8 s), its
    settings file rewritten between reloads; ``post()`` sends a request as the SaaS does."""

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        self.jobs: list[_FakeJob] = []

        async def start_job(launcher: Any, reactor: Any, argv: list[str],
                            *args: Any, **kwargs: Any) -> _FakeJob:
            job = _FakeJob(argv)
            self.jobs.append(job)
            return job

        self.patch(terminal, "start_job", start_job)

    def start(self, models: dict[str, Any], **descriptors: dict[str, Any]) -> GatewayService:
        descriptors = descriptors or {"sleepy": descriptor("sleepy", "sleep 8 <result>")}
        self.node = write_node(self, descriptors=descriptors, pipelines={"models": models})
        self.saas = TestSaas(self.node.path.parent / "keys")
        self.reactor = MemoryReactorClock()
        self.reactor.advance(time.time())  # the SaaS tokens are checked against this clock
        self.service = GatewayService(self.node.settings, self.node.parts, self.reactor)
        self.service.startService()
        self.addCleanup(self.service.stopService)
        return self.service

    def rewrite(self, change: Callable[[dict[str, Any]], None]) -> None:
        document = yaml.safe_load(self.node.path.read_text())
        change(document)
        self.node.path.write_text(yaml.safe_dump(document))

    def reload(self, models: dict[str, Any] | None = None) -> bool:
        """Reload, with these per-model settings when given."""
        if models is not None:
            self.rewrite(lambda document: document["pipelines"].update(models=models))
        result: bool = self.successResultOf(self.service.reload())
        return result

    def post(self, endpoint: str = "sleepy") -> tuple[Deferred[None], RecordingClient]:
        """A request to ``/<endpoint>/``, through the chain the listener's connections use;
        the Deferred fires once it is over."""
        body, content_type = multipart_body({"input_form": input_form({})}, {})
        headers = [("Host", "node"), ("Content-Type", content_type),
                   *self.saas.headers().items()]
        exchange = make_exchange("POST", f"/{endpoint}/", headers=headers, body=body)
        client = RecordingClient(body)
        runner = self.service.factory.handler  # type: ignore[attr-defined]
        return runner.serve(exchange, client), client

    def started(self) -> int:
        """How many jobs were started."""
        return len(self.jobs)

    def end_job(self, index: int, done: Deferred[None], client: RecordingClient) -> None:
        """End the ``index``-th job started; its request is answered."""
        self.jobs[index].end()
        self.successResultOf(done)
        self.assertEqual(client.status, 200, client.body)


class JobLimitTests(_JobSlotsCase):
    """``concurrency`` and ``queueSize`` hold across a reload, and take its new values."""

    def test_limit_holds_across_a_reload(self) -> None:
        """With ``concurrency: 2``, two jobs run, a reload comes, two more requests arrive:
        they wait for the first two instead of running beside them, and start as those
        end."""
        self.start({"sleepy": {"concurrency": 2, "queueSize": 4}})
        first = [self.post() for _ in range(2)]
        self.assertEqual(self.started(), 2)
        self.assertTrue(self.reload())
        later = [self.post() for _ in range(2)]
        self.assertEqual(self.started(), 2)
        self.end_job(0, *first[0])
        self.assertEqual(self.started(), 3)
        self.end_job(1, *first[1])
        self.assertEqual(self.started(), 4)
        self.end_job(2, *later[0])
        self.end_job(3, *later[1])

    def test_queue_bound_holds_across_a_reload(self) -> None:
        """With ``concurrency: 1, queueSize: 1``, one job running and one request waiting
        before a reload, the next request after it is turned away (503)."""
        self.start({"sleepy": {"concurrency": 1, "queueSize": 1}})
        running, waiting = self.post(), self.post()
        self.assertTrue(self.reload())
        refused, client = self.post()
        self.successResultOf(refused)
        self.assertEqual(client.status, 503, client.body)
        self.end_job(0, *running)
        self.end_job(1, *waiting)

    def test_raised_concurrency_starts_waiting_jobs(self) -> None:
        """A reload raising ``concurrency`` from 1 to 2 starts a waiting job at once."""
        self.start({"sleepy": {"concurrency": 1, "queueSize": 2}})
        running, waiting = self.post(), self.post()
        self.assertEqual(self.started(), 1)
        self.assertTrue(self.reload({"sleepy": {"concurrency": 2, "queueSize": 2}}))
        self.assertEqual(self.started(), 2)
        self.end_job(0, *running)
        self.end_job(1, *waiting)

    def test_lowered_concurrency_keeps_running_jobs(self) -> None:
        """A reload lowering ``concurrency`` from 2 to 1 with two jobs running ends
        neither; a new request waits until both are over, not only one."""
        self.start({"sleepy": {"concurrency": 2, "queueSize": 2}})
        first = [self.post() for _ in range(2)]
        self.assertTrue(self.reload({"sleepy": {"concurrency": 1, "queueSize": 2}}))
        later = self.post()
        self.end_job(0, *first[0])
        self.assertEqual(self.started(), 2)
        self.end_job(1, *first[1])
        self.assertEqual(self.started(), 3)
        self.end_job(2, *later)

    def test_shorter_queue_keeps_its_waiting_requests(self) -> None:
        """A reload shortening ``queueSize`` from 2 to 0 keeps both waiting requests, which
        run in turn, and turns the next request away."""
        self.start({"sleepy": {"concurrency": 1, "queueSize": 2}})
        posts = [self.post() for _ in range(3)]
        self.assertTrue(self.reload({"sleepy": {"concurrency": 1, "queueSize": 0}}))
        refused, client = self.post()
        self.successResultOf(refused)
        self.assertEqual(client.status, 503, client.body)
        for index, post in enumerate(posts):
            self.assertEqual(self.started(), index + 1)
            self.end_job(index, *post)

    def test_refused_reload_keeps_the_limits(self) -> None:
        """A reload refused for another problem does not apply its new ``concurrency``."""
        self.start({"sleepy": {"concurrency": 1, "queueSize": 2}})
        running, waiting = self.post(), self.post()
        bad = Path(self.node.settings.pipelines.models_path) / "bad.json"
        bad.write_text('{"title": "bad",\n')
        self.assertFalse(self.reload({"sleepy": {"concurrency": 2, "queueSize": 2}}))
        self.assertEqual(self.started(), 1)
        self.end_job(0, *running)
        self.end_job(1, *waiting)


class RemovedEndpointTests(_JobSlotsCase):
    """A model a reload removed, whose job still runs."""

    def remove_sleepy(self) -> None:
        (Path(self.node.settings.pipelines.models_path) / "sleepy.json").unlink()

    def test_slots_forgotten_once_its_jobs_end(self) -> None:
        """The removed model's slots stay while its job runs, and are forgotten once the
        job is over."""
        service = self.start({"sleepy": {"concurrency": 1}},
                             sleepy=descriptor("sleepy", "sleep 8 <result>"),
                             other=descriptor("other", "true <result>"))
        running = self.post()
        self.remove_sleepy()
        self.assertTrue(self.reload())
        self.assertEqual(sorted(service.kept.job_slots()), ["other", "sleepy"])
        self.end_job(0, *running)
        self.assertEqual(sorted(service.kept.job_slots()), ["other"])

    def test_model_back_before_its_job_ended_keeps_counting_it(self) -> None:
        """A model removed and added back by two reloads while its job runs still counts
        that job: with ``concurrency: 1`` a new request waits for it."""
        self.start({"sleepy": {"concurrency": 1}})
        running = self.post()
        document = Path(self.node.settings.pipelines.models_path) / "sleepy.json"
        saved = document.read_text()
        self.remove_sleepy()
        self.assertTrue(self.reload())
        document.write_text(saved)
        self.assertTrue(self.reload())
        later = self.post()
        self.assertEqual(self.started(), 1)
        self.end_job(0, *running)
        self.end_job(1, *later)


class JobCountTests(_JobSlotsCase):
    """The status line and the metrics count every job running, a retiring route's too."""

    def setUp(self) -> None:
        super().setUp()
        self.start({"sleepy": {"concurrency": 2}},
                   sleepy=descriptor("sleepy", "sleep 8 <result>"),
                   other=descriptor("other", "true <result>"))
        self.old = self.post()
        (Path(self.node.settings.pipelines.models_path) / "sleepy.json").unlink()
        self.assertTrue(self.reload())
        self.new = self.post("other")
        self.assertEqual(self.started(), 2)

    def test_status_line(self) -> None:
        """With one job of a removed model and one of a current model running, the status
        line says two jobs run; one once the removed model's job is over."""
        self.assertTrue(self.service.describe().endswith(", 2 jobs running"),
                        self.service.describe())
        self.end_job(0, *self.old)
        self.assertTrue(self.service.describe().endswith(", 1 job running"),
                        self.service.describe())
        self.end_job(1, *self.new)

    def test_metrics(self) -> None:
        """``runnergw_pipeline_jobs_running`` shows the removed model's job while it runs,
        and the model's line goes once it is over."""
        metrics = self.service.metrics
        assert metrics is not None

        def running(route: str) -> float | None:
            return metrics.registry.get_sample_value("runnergw_pipeline_jobs_running",
                                                     {"route": route})

        self.assertEqual((running("sleepy"), running("other")), (1.0, 1.0))
        self.end_job(0, *self.old)
        self.assertEqual((running("sleepy"), running("other")), (None, 1.0))
        self.end_job(1, *self.new)

