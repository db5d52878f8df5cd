"""The pipeline models' lines: requests waiting for a job slot, jobs running."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.trial.unittest import SynchronousTestCase

from runnergw.jobs.slots import JobSlots
from runnergw.metrics.pipeline_queues import PipelineQueueCollector

__all__ = ["PipelineQueueTests"]


class PipelineQueueTests(SynchronousTestCase):
    """``runnergw_pipeline_queue_depth`` and ``runnergw_pipeline_jobs_running``."""

    def test_depth_and_running(self) -> None:
        """One job runs, two wait: the figures of the endpoint's route, read at the
        scrape; a route without job slots (a runner) has no line."""
        slots = JobSlots(1, 4)
        registry = CollectorRegistry()
        registry.register(PipelineQueueCollector(lambda: {"cp": slots}))
        for _ in range(3):
            slots.acquire()
        self.assertEqual(registry.get_sample_value("runnergw_pipeline_queue_depth",
                                                   {"route": "cp"}), 2.0)
        self.assertEqual(registry.get_sample_value("runnergw_pipeline_jobs_running",
                                                   {"route": "cp"}), 1.0)
        self.assertIsNone(registry.get_sample_value("runnergw_pipeline_queue_depth",
                                                    {"route": "ollama"}))
        slots.release()
        self.assertEqual(registry.get_sample_value("runnergw_pipeline_queue_depth",
                                                   {"route": "cp"}), 1.0)
