"""What the gateway has under way, read when Prometheus scrapes: open connections, exchanges
under way, whether it drains, the reloads since the start and the requests the HTTP server
refused before any exchange began."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["ServiceStateCollector"]


class ServiceStateCollector(Collector):
    """``runnergw_open_connections``, ``runnergw_exchanges_in_progress``,
    ``runnergw_draining``, ``runnergw_reloads_total{result}`` and
    ``runnergw_http_refused_total{status}``, from ``service``: its ``factory.connections``
    and ``factory.refused``, the chain runner's ``inflight``, ``readiness`` and
    ``reload_results``."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Metric]:
        service = self.service
        yield GaugeMetricFamily("runnergw_open_connections", "Client connections open",
                                value=len(service.factory.connections))
        yield GaugeMetricFamily("runnergw_exchanges_in_progress", "Requests under way "
                                "(streams included), whichever configuration they began with",
                                value=service.factory.handler.inflight.count)
        yield GaugeMetricFamily("runnergw_draining", "1 once a stop began (readiness is then "
                                "refused), else 0", value=int(service.readiness.draining))
        reloads = CounterMetricFamily("runnergw_reloads", "Reloads of the settings (SIGHUP), "
                                      "by result", labels=("result",))
        for result in ("ok", "failed"):
            reloads.add_metric((result,), service.reload_results.get(result, 0))
        yield reloads
        refused = CounterMetricFamily(
            "runnergw_http_refused", "Requests the HTTP server refused before any route saw "
            "them (malformed, too large or too slow heads), by status", labels=("status",))
        for status, count in sorted(service.factory.refused.items()):
            refused.add_metric((str(status),), count)
        yield refused
