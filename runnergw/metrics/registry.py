"""The gateway's metrics: one registry per service (never the process-wide default), fed by
each exchange as it ends and by the service's state when Prometheus scrapes."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry
from twisted.internet.interfaces import IReactorTime

from runnergw.chain.exchange import Exchange
from runnergw.metrics.exchanges import ExchangeMetrics, route_label
from runnergw.metrics.genai import GenAIMetrics
from runnergw.metrics.jobs import JobMetrics
from runnergw.metrics.limiter import LimiterCollector
from runnergw.metrics.pipeline_queues import PipelineQueueCollector
from runnergw.metrics.service_state import ServiceStateCollector
from runnergw.metrics.upstream_hosts import UpstreamHostCollector

__all__ = ["GatewayMetrics"]


class GatewayMetrics:
    """Every metric of one gateway service.

    ``service`` is read at scrape time: ``factory.connections``, ``factory.handler`` (the
    chain runner: its ``inflight`` and the current ``router``), ``readiness``,
    ``reload_results`` and ``kept`` (the endpoints' job slots).
    """

    def __init__(self, service: Any, clock: IReactorTime) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.exchanges = ExchangeMetrics(self.registry, clock)
        self.genai = GenAIMetrics(self.registry)
        self.jobs = JobMetrics(self.registry)

        def routes() -> Any:
            return service.factory.handler.router.routes

        self.registry.register(ServiceStateCollector(service))
        self.registry.register(UpstreamHostCollector(routes))
        self.registry.register(PipelineQueueCollector(lambda: service.kept.job_slots()))
        self.registry.register(LimiterCollector(lambda: service.limits))

    def observe(self, exchange: Exchange) -> None:
        """Record an exchange that is over (a chain runner observer)."""
        self.exchanges.observe(exchange)
        self.genai.observe(exchange)
        self.jobs.observe(exchange, route_label(exchange))
