"""What every exchange adds to the metrics once it is over: its count by route, method class,
status, outcome and reason kind, its duration, its time to the first byte and the gateway's
own part of that time (the ``gw`` of ``Server-Timing``)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from twisted.internet.interfaces import IReactorTime

from runnergw.chain.exchange import Exchange
from runnergw.chain.timing import gateway_seconds
from runnergw.metrics.labels import method_class, outcome_label, reason_kind, status_label

__all__ = ["DURATION_BUCKETS", "OVERHEAD_BUCKETS", "ExchangeMetrics", "route_label"]

DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0, 600.0)
"""Seconds, from a refusal's milliseconds to a long generation's minutes."""

OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                    0.25, 1.0)
"""Seconds: the gateway's own time is counted in fractions of a millisecond."""


def route_label(exchange: Exchange) -> str:
    """The route's name (a runner's or a pipeline model's endpoint, from the settings);
    empty when no route matched."""
    route = exchange.route
    return route.name if route is not None else ""


class ExchangeMetrics:
    """``runnergw_requests_total``, ``runnergw_request_duration_seconds``,
    ``runnergw_time_to_first_byte_seconds`` and ``runnergw_gateway_overhead_seconds``."""

    def __init__(self, registry: CollectorRegistry, clock: IReactorTime) -> None:
        self.clock = clock
        self.requests = Counter(
            "runnergw_requests", "Requests served, by route, method class (read, write, "
            "other), status sent (0: none), outcome and reason kind",
            ("route", "method_class", "status", "outcome", "reason"), registry=registry)
        self.duration = Histogram(
            "runnergw_request_duration_seconds", "From the request head read to the last "
            "response byte sent (or the end of the exchange)", ("route", "method_class"),
            buckets=DURATION_BUCKETS, registry=registry)
        self.first_byte = Histogram(
            "runnergw_time_to_first_byte_seconds", "From the request head read to the "
            "response head sent", ("route", "method_class"), buckets=DURATION_BUCKETS,
            registry=registry)
        self.overhead = Histogram(
            "runnergw_gateway_overhead_seconds", "The gateway's own time up to the response "
            "head: the time to the first byte less the runner's time to its head (the gw "
            "of Server-Timing)", ("route",), buckets=OVERHEAD_BUCKETS, registry=registry)
        self._counted: dict[tuple[str, ...], Any] = {}
        self._timed: dict[tuple[str, str], tuple[Any, Any, Any]] = {}
        """Children by label values, found once: ``labels()`` costs a lock and checks."""

    def observe(self, exchange: Exchange) -> None:
        """Count and time ``exchange``, which is over."""
        route = route_label(exchange)
        kind = method_class(exchange.method)
        key = (route, kind, status_label(exchange.status), outcome_label(exchange.outcome),
               reason_kind(exchange.reason))
        counter = self._counted.get(key)
        if counter is None:
            counter = self._counted[key] = self.requests.labels(*key)
        counter.inc()
        timed = self._timed.get((route, kind))
        if timed is None:
            timed = self._timed[(route, kind)] = (
                self.duration.labels(route, kind), self.first_byte.labels(route, kind),
                self.overhead.labels(route))
        duration, first_byte, overhead = timed
        started = exchange.started
        finished = exchange.finished_at
        duration.observe(max((finished if finished is not None else self.clock.seconds())
                             - started, 0.0))
        head_sent = exchange.first_byte_at
        if head_sent is not None:
            first_byte.observe(max(head_sent - started, 0.0))
            overhead.observe(max(gateway_seconds(exchange, head_sent), 0.0))
