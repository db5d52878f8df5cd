"""The supervisor's metrics: every worker's exposition gathered into one, each sample
labelled with its worker, as Prometheus reads it."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.defer import Deferred, fail
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import NOT_DONE_YET
from twisted.web.test.requesthelper import DummyRequest

from runnergw.workers.pages import WorkersReadyPage, merged_families, supervisor_families

__all__ = ["MergedFamiliesTests", "PageFailureTests", "SupervisorFamiliesTests"]


def _exposition(requests: int, seconds: float) -> str:
    registry = CollectorRegistry(auto_describe=False)
    counter = Counter("runnergw_requests", "Requests", ["route"], registry=registry)
    counter.labels("runner0").inc(requests)
    histogram = Histogram("runnergw_request_duration_seconds", "Durations", ["route"],
                          buckets=(0.1, 1.0), registry=registry)
    histogram.labels("runner0").observe(seconds)
    return generate_latest(registry).decode()


def _encode(families: list) -> str:
    class Families:
        def collect(self) -> list:
            return families

    return generate_latest(Families()).decode()  # type: ignore[arg-type]


class MergedFamiliesTests(SynchronousTestCase):
    """``merged_families``."""

    def setUp(self) -> None:
        self.text = _encode(merged_families({0: _exposition(3, 0.05), 1: _exposition(5, 2.0)}))
        self.families = {f.name: f for f in text_string_to_metric_families(self.text)}

    def test_counter_per_worker(self) -> None:
        """A counter keeps its labels and gets ``worker``: each worker's count apart."""
        samples = {s.labels["worker"]: s.value
                   for s in self.families["runnergw_requests"].samples
                   if s.name == "runnergw_requests_total"}
        self.assertEqual(samples, {"0": 3.0, "1": 5.0})

    def test_one_family_each(self) -> None:
        """Each family is written once (HELP and TYPE once), whatever the workers' count."""
        self.assertEqual(self.text.count("# TYPE runnergw_requests_total counter"), 1)
        self.assertEqual(self.text.count("# TYPE runnergw_request_duration_seconds "
                                         "histogram"), 1)

    def test_histogram_buckets_per_worker(self) -> None:
        """A histogram's buckets stay whole per worker."""
        buckets = {(s.labels["worker"], s.labels["le"]): s.value
                   for s in self.families["runnergw_request_duration_seconds"].samples
                   if s.name.endswith("_bucket")}
        self.assertEqual(buckets[("0", "0.1")], 1.0)
        self.assertEqual(buckets[("1", "1.0")], 0.0)
        self.assertEqual(buckets[("1", "+Inf")], 1.0)

    def test_unreadable_exposition_left_out(self) -> None:
        """A worker's answer that is not an exposition leaves that worker out, not the
        others."""
        families = merged_families({0: "not { an exposition", 1: _exposition(2, 0.5)})
        workers = {s.labels["worker"] for f in families for s in f.samples}
        self.assertEqual(workers, {"1"})


class SupervisorFamiliesTests(SynchronousTestCase):
    """``supervisor_families``: the supervisor's own view of its workers."""

    def test_up_and_restarts(self) -> None:
        """Each worker's state (1 serving, 0 not) and how often it was started again."""
        text = _encode(supervisor_families([(0, True, 0, {}), (1, False, 3, {})]))
        self.assertIn('runnergw_worker_up{worker="0"} 1.0', text)
        self.assertIn('runnergw_worker_up{worker="1"} 0.0', text)
        self.assertIn('runnergw_worker_restarts_total{worker="1"} 3.0', text)

    def test_reloads_by_result(self) -> None:
        """Each worker's reloads, taken and refused, counted apart."""
        text = _encode(supervisor_families([(0, True, 0, {"ok": 2, "refused": 1})]))
        self.assertIn('runnergw_worker_reloads_total{result="ok",worker="0"} 2.0', text)
        self.assertIn('runnergw_worker_reloads_total{result="refused",worker="0"} 1.0', text)


class _NoPages:
    """Worker pages that cannot be read."""

    def get(self, page: bytes) -> Deferred[list[Any]]:
        return fail(RuntimeError("broken"))


class PageFailureTests(SynchronousTestCase):
    """A supervisor page whose answer cannot be made."""

    def test_answered_500(self) -> None:
        """The scraper gets a 500, not a request left hanging; the failure is logged."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        page = WorkersReadyPage(_NoPages(), lambda: [])  # type: ignore[arg-type]
        request = DummyRequest([b""])
        self.assertEqual(page.render_GET(request), NOT_DONE_YET)
        self.assertEqual((request.responseCode, request.finished), (500, 1))
        self.assertEqual([e.get("event") for e in observer], ["workers_page_failed"])
        self.flushLoggedErrors(RuntimeError)
