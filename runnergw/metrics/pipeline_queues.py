"""The pipeline models' lines, read when Prometheus scrapes: jobs running and requests
waiting for one, per route, from the endpoints' kept job slots (``KeptParts.job_slots``): the
jobs of a route a reload replaced are counted until they are over."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runnergw.jobs.slots import JobSlots

__all__ = ["PipelineQueueCollector"]


class PipelineQueueCollector(Collector):
    """``runnergw_pipeline_queue_depth`` (requests waiting for a job slot) and
    ``runnergw_pipeline_jobs_running``, by route (a pipeline route is named after its
    endpoint)."""

    def __init__(self, slots: Callable[[], Mapping[str, JobSlots]]) -> None:
        self.slots = slots
        """Each endpoint's job slots, by endpoint."""

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily("runnergw_pipeline_queue_depth", "Requests waiting for "
                                    "a job slot", labels=("route",))
        running = GaugeMetricFamily("runnergw_pipeline_jobs_running", "Jobs running",
                                    labels=("route",))
        for endpoint, slots in sorted(self.slots().items()):
            waiting.add_metric((endpoint,), slots.waiting)
            running.add_metric((endpoint,), slots.running)
        yield waiting
        yield running
