"""Pipeline jobs: how long they ran and how they ended, by route."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.trial.unittest import SynchronousTestCase

from runnergw.metrics.jobs import JobMetrics, note_job
from runnergw.testing import make_exchange

__all__ = ["JobMetricsTests"]


class JobMetricsTests(SynchronousTestCase):
    """``runnergw_jobs_total`` and ``runnergw_job_duration_seconds``."""

    def setUp(self) -> None:
        self.registry = CollectorRegistry()
        self.metrics = JobMetrics(self.registry)

    def test_job_counted_and_timed(self) -> None:
        """A job noted on its exchange is counted by route and outcome, with its time."""
        exchange = make_exchange("POST", "/cp/")
        note_job(exchange, 12.5, "timeout")
        self.metrics.observe(exchange, "cp")
        labels = {"route": "cp", "outcome": "timeout"}
        self.assertEqual(self.registry.get_sample_value("runnergw_jobs_total", labels), 1.0)
        self.assertEqual(self.registry.get_sample_value("runnergw_job_duration_seconds_sum",
                                                        labels), 12.5)

    def test_no_job_no_record(self) -> None:
        """A request that ran no job (refused, or left while queued) adds nothing."""
        self.metrics.observe(make_exchange("POST", "/cp/"), "cp")
        self.assertEqual([sample for family in self.registry.collect()
                          for sample in family.samples], [])

    def test_note_not_audited(self) -> None:
        """The note is metadata, not an audit field."""
        exchange = make_exchange("POST", "/cp/")
        before = dict(exchange.notes)
        note_job(exchange, 1.0, "ok")
        self.assertEqual(exchange.notes, before)
