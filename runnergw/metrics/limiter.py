"""Whether each limit is counted where it should be, read when Prometheus scrapes."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

__all__ = ["LimiterCollector"]


class LimiterCollector(Collector):
    """``runnergw_limiter_degraded{limit}``: 1 while the limit cannot be counted in Redis
    (refused or counted on this node alone, as ``limits.onRedisError`` says), else 0.
    Nothing while the limits are kept in this process."""

    def __init__(self, limits: Callable[[], Any]) -> None:
        self.limits = limits
        """The current ``LimitParts`` (None without a ``roles`` section)."""

    def collect(self) -> Iterator[Metric]:
        parts = self.limits()
        degraded = getattr(getattr(parts, "state", None), "degraded", None)
        if degraded is None:
            return
        gauge = GaugeMetricFamily("runnergw_limiter_degraded", "1 while the limit is not "
                                  "counted in the shared state (Redis away)", labels=("limit",))
        for limit, away in degraded().items():
            gauge.add_metric((limit,), 1.0 if away else 0.0)
        yield gauge
