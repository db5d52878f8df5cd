"""The pipeline models' lines, read when Prometheus scrapes: jobs running and requests
waiting for one, per route (a command terminal's ``slots``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runnergw.jobs.slots import JobSlots

__all__ = ["PipelineQueueCollector"]


class PipelineQueueCollector(Collector):
    """``runnergw_pipeline_queue_depth`` (requests waiting for a job slot) and
    ``runnergw_pipeline_jobs_running``, by route."""

    def __init__(self, routes: Callable[[], Sequence[Any]]) -> None:
        self.routes = routes
        """The current routes (those a new request would take)."""

    def collect(self) -> Iterator[Metric]:
        waiting = GaugeMetricFamily("runnergw_pipeline_queue_depth", "Requests waiting for "
                                    "a job slot", labels=("route",))
        running = GaugeMetricFamily("runnergw_pipeline_jobs_running", "Jobs running",
                                    labels=("route",))
        for route in self.routes():
            slots = getattr(route.terminal, "slots", None)
            if not isinstance(slots, JobSlots):
                continue
            waiting.add_metric((route.name,), slots.waiting)
            running.add_metric((route.name,), slots.running)
        yield waiting
        yield running
