"""Each exchange, once over, counted by route, method class, status, outcome and reason
kind, and timed: duration, time to first byte, the gateway's own time."""

from __future__ import annotations

from prometheus_client import CollectorRegistry
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange, Reject
from runnergw.chain.route import Route
from runnergw.metrics.exchanges import ExchangeMetrics
from runnergw.testing import make_exchange

__all__ = ["ExchangeCountTests", "ExchangeTimingTests"]

_ROUTE = Route("ollama", ("ollama",), (), None)


def _exchange(method: str = "POST", status: int = 200, first_byte: float | None = 0.5,
              finished: float | None = 2.0) -> Exchange:
    exchange = make_exchange(method, "/ollama/api/generate")
    exchange.route = _ROUTE
    exchange.status = status
    exchange.first_byte_at = first_byte
    exchange.finished_at = finished
    return exchange


class _MetricsTestCase(SynchronousTestCase):

    def setUp(self) -> None:
        self.registry = CollectorRegistry()
        self.clock = Clock()
        self.metrics = ExchangeMetrics(self.registry, self.clock)

    def count(self, **labels: str) -> float | None:
        return self.registry.get_sample_value("runnergw_requests_total", labels)

    def every_label_value(self) -> set[str]:
        return {value for family in self.registry.collect() for sample in family.samples
                for value in sample.labels.values()}


class ExchangeCountTests(_MetricsTestCase):
    """``runnergw_requests_total``."""

    def test_ok(self) -> None:
        """An answered request: its route, ``write``, 200, ``ok``, no reason."""
        self.metrics.observe(_exchange())
        self.metrics.observe(_exchange())
        self.assertEqual(self.count(route="ollama", method_class="write", status="200",
                                    outcome="ok", reason=""), 2.0)

    def test_refusal(self) -> None:
        """A refused model is counted under the reason's kind; the model's name, which the
        client chose, is no label value."""
        exchange = _exchange(status=403)
        exchange.record_refusal(Reject(403, "no", reason="model evil/model:666 not allowed"))
        self.metrics.observe(exchange)
        self.assertEqual(self.count(route="ollama", method_class="write", status="403",
                                    outcome="denied", reason="model"), 1.0)
        self.assertFalse(any("evil" in value for value in self.every_label_value()))

    def test_client_gone(self) -> None:
        """A client that left before any answer: status 0, ``client_gone``."""
        exchange = _exchange(status=0, first_byte=None)
        exchange.outcome = "client_gone"
        exchange.reason = "client disconnected before the response was complete"
        self.metrics.observe(exchange)
        self.assertEqual(self.count(route="ollama", method_class="write", status="0",
                                    outcome="client_gone", reason="client_gone"), 1.0)

    def test_internal_error(self) -> None:
        """A request that failed inside the gateway: 500, ``error``, ``internal``."""
        exchange = _exchange("GET", status=500)
        exchange.outcome = "error"
        exchange.reason = "internal error"
        self.metrics.observe(exchange)
        self.assertEqual(self.count(route="ollama", method_class="read", status="500",
                                    outcome="error", reason="internal"), 1.0)

    def test_unmatched_path(self) -> None:
        """A request no route matched is counted under the empty route; its path is no
        label value."""
        exchange = make_exchange("GET", "/secret/place")
        exchange.status = 404
        exchange.record_refusal(Reject(404, "no runner serves this path"))
        self.metrics.observe(exchange)
        self.assertEqual(self.count(route="", method_class="read", status="404",
                                    outcome="refused", reason="not_found"), 1.0)
        self.assertFalse(any("secret" in value for value in self.every_label_value()))


class ExchangeTimingTests(_MetricsTestCase):
    """The duration, time to first byte and overhead histograms."""

    def sample(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def test_duration_and_first_byte(self) -> None:
        """Duration from the head read to the last byte; first byte to the head sent."""
        self.metrics.observe(_exchange(first_byte=0.5, finished=2.0))
        route = {"route": "ollama", "method_class": "write"}
        self.assertEqual(self.sample("runnergw_request_duration_seconds_sum", **route), 2.0)
        self.assertEqual(self.sample("runnergw_request_duration_seconds_count", **route), 1.0)
        self.assertEqual(self.sample("runnergw_time_to_first_byte_seconds_sum", **route), 0.5)

    def test_unfinished_exchange_timed_now(self) -> None:
        """An exchange the server never marked finished is timed to the moment it ended;
        without a head, no time to first byte is recorded."""
        self.clock.advance(3.0)
        self.metrics.observe(_exchange(status=0, first_byte=None, finished=None))
        route = {"route": "ollama", "method_class": "write"}
        self.assertEqual(self.sample("runnergw_request_duration_seconds_sum", **route), 3.0)
        self.assertEqual(self.sample("runnergw_time_to_first_byte_seconds_count", **route), 0.0)

    def test_overhead_leaves_the_runner_out(self) -> None:
        """The gateway's own time is the time to first byte less the runner's: the ``gw``
        of Server-Timing."""
        exchange = _exchange(first_byte=1.005)
        exchange.upstream_sent_at = 0.002
        exchange.upstream_head_at = 1.002
        self.metrics.observe(exchange)
        overhead = self.sample("runnergw_gateway_overhead_seconds_sum", route="ollama")
        assert overhead is not None
        self.assertAlmostEqual(overhead, 0.005)
        self.assertEqual(self.sample("runnergw_gateway_overhead_seconds_bucket",
                                     route="ollama", le="0.005"), 1.0)
        self.assertEqual(self.sample("runnergw_gateway_overhead_seconds_bucket",
                                     route="ollama", le="0.0025"), 0.0)

    def test_refusal_overhead_is_all_its_time(self) -> None:
        """An answer the gateway made itself: all of its time to first byte is the
        gateway's."""
        self.metrics.observe(_exchange(status=401, first_byte=0.0004))
        overhead = self.sample("runnergw_gateway_overhead_seconds_sum", route="ollama")
        assert overhead is not None
        self.assertAlmostEqual(overhead, 0.0004)
