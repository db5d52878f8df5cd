"""The runners' hosts, read when Prometheus scrapes, from each current route terminal that
tells them (``upstream_hosts()``: objects with ``runner``, ``host``, ``healthy``,
``ejections`` and ``active``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["UpstreamHostCollector"]

_LABELS = ("runner", "host")


class UpstreamHostCollector(Collector):
    """``runnergw_upstream_host_healthy``, ``runnergw_upstream_host_ejections_total`` and
    ``runnergw_upstream_host_active_requests``, by runner and host as configured."""

    def __init__(self, routes: Callable[[], Sequence[Any]]) -> None:
        self.routes = routes
        """The current routes (those a new request would take)."""

    def collect(self) -> Iterator[Metric]:
        healthy = GaugeMetricFamily("runnergw_upstream_host_healthy", "1 while the host "
                                    "takes requests, 0 while it is ejected", labels=_LABELS)
        ejections = CounterMetricFamily("runnergw_upstream_host_ejections", "Times the host "
                                        "was ejected", labels=_LABELS)
        active = GaugeMetricFamily("runnergw_upstream_host_active_requests", "Requests under "
                                   "way to the host", labels=_LABELS)
        seen: set[tuple[str, str]] = set()
        for route in self.routes():
            hosts = getattr(route.terminal, "upstream_hosts", None)
            if hosts is None:
                continue
            for state in hosts():
                key = (str(state.runner), str(state.host))
                if key in seen:
                    continue
                seen.add(key)
                healthy.add_metric(key, 1 if state.healthy else 0)
                ejections.add_metric(key, state.ejections)
                active.add_metric(key, state.active)
        yield healthy
        yield ejections
        yield active
