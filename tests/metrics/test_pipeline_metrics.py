"""A pipeline gateway's jobs in its metrics: counted and timed by route and outcome."""

from __future__ import annotations

from twisted.trial.unittest import TestCase

from tests.helpers.command_gateway import descriptor, example, start_pipelines

__all__ = ["PipelineJobMetricsTests"]


class PipelineJobMetricsTests(TestCase):
    """The command terminal notes each job it ran for the metrics."""

    timeout = 60

    async def test_jobs_by_outcome(self) -> None:
        """A job that succeeds and one whose command fails are counted under their route
        and outcome, with their run times; the request counter has them too."""
        pipelines = start_pipelines(self, {"text-stats": example("text-stats"),
                                           "fails": descriptor("fails", "false <result>")})
        text = b"one two two\n"
        good = await pipelines.post("text-stats", {"top": 1},
                                    {"document": ("notes.txt", "text/plain", text)})
        bad = await pipelines.post("fails")
        self.assertEqual((good.status, bad.status), (200, 400))
        await pipelines.records(2)
        service = pipelines.gateway.service
        await service.factory.handler.inflight.when_idle()
        assert service.metrics is not None
        registry = service.metrics.registry
        for route, outcome in (("text-stats", "ok"), ("fails", "failed")):
            labels = {"route": route, "outcome": outcome}
            self.assertEqual(registry.get_sample_value("runnergw_jobs_total", labels), 1.0)
            self.assertEqual(registry.get_sample_value("runnergw_job_duration_seconds_count",
                                                       labels), 1.0)
        self.assertEqual(registry.get_sample_value("runnergw_requests_total", {
            "route": "fails", "method_class": "write", "status": "400",
            "outcome": "command_failed", "reason": "command"}), 1.0)
        self.assertEqual(registry.get_sample_value("runnergw_pipeline_queue_depth",
                                                   {"route": "text-stats"}), 0.0)
