"""The gateway's metrics, fed by the chain runner as each exchange ends."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import REGISTRY
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange
from runnergw.chain.inflight import InFlight
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.health import Readiness
from runnergw.kept import KeptParts
from runnergw.metrics.registry import GatewayMetrics
from runnergw.testing import Answer, CannedTerminal, RecordingClient, make_exchange

__all__ = ["ChainRunnerObserverTests", "GatewayMetricsTests"]


class _Settle:
    """A filter whose ``done`` settles the counts (as the usage filter does), at once or
    once ``later`` fires."""

    name = "settle"

    def __init__(self, later: Deferred[None] | None = None) -> None:
        self.later = later

    def done(self, exchange: Exchange) -> Any:
        exchange.notes["settled"] = True
        return self.later


def _gateway(*filters: Any) -> ChainRunner:
    terminal = CannedTerminal(Answer.json({"ok": True}))
    route = Route("ollama", ("ollama",), filters, terminal)  # type: ignore[arg-type]
    return ChainRunner(Router([route], Route("", (), (), None)))


def _service(runner: ChainRunner) -> Any:
    return SimpleNamespace(factory=SimpleNamespace(connections=set(), handler=runner),
                           readiness=Readiness(), reload_results={"ok": 0, "failed": 0},
                           kept=KeptParts())


class ChainRunnerObserverTests(SynchronousTestCase):
    """``ChainRunner.observers``: told of each exchange once it is over."""

    def test_called_after_done_hooks(self) -> None:
        """An observer sees the exchange once every ``done`` hook ran, an awaited one
        included."""
        later: Deferred[None] = Deferred()
        runner = _gateway(_Settle(later=later))
        seen: list[tuple[Exchange, bool]] = []
        runner.observers.append(lambda e: seen.append((e, bool(e.notes.get("settled")))))
        exchange = make_exchange("GET", "/ollama/api/tags")
        runner.serve(exchange, RecordingClient())
        self.assertEqual(seen, [])
        later.callback(None)
        self.assertEqual(seen, [(exchange, True)])

    def test_failing_observer_logged(self) -> None:
        """An observer that raises is logged; the others still run and the exchange ends."""
        runner = _gateway()
        seen: list[Exchange] = []

        def broken(exchange: Exchange) -> None:
            raise ValueError("broken observer")
        runner.observers.extend([broken, seen.append])
        done = runner.serve(make_exchange("GET", "/ollama/api/tags"), RecordingClient())
        self.successResultOf(done)
        self.assertEqual(len(seen), 1)
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class GatewayMetricsTests(SynchronousTestCase):
    """Every metric of one service, in a registry of its own."""

    def setUp(self) -> None:
        self.runner = _gateway(_Settle())
        self.metrics = GatewayMetrics(_service(self.runner), Clock())
        self.runner.observers.append(self.metrics.observe)

    def test_exchange_counted(self) -> None:
        """A request through the chain is counted once it is over."""
        self.successResultOf(self.runner.serve(make_exchange("GET", "/ollama/api/tags"),
                                               RecordingClient()))
        self.assertEqual(self.metrics.registry.get_sample_value("runnergw_requests_total", {
            "route": "ollama", "method_class": "read", "status": "200", "outcome": "ok",
            "reason": ""}), 1.0)

    def test_own_registry(self) -> None:
        """Two services do not share metrics, nor use the process-wide registry."""
        other = GatewayMetrics(_service(_gateway()), Clock())
        self.assertIsNot(other.registry, self.metrics.registry)
        self.assertIsNone(REGISTRY.get_sample_value("runnergw_open_connections"))

    def test_scrape_reads_the_service(self) -> None:
        """Exchanges under way are the chain runner's count at the scrape."""
        self.runner.inflight = InFlight()
        self.runner.inflight.enter()
        self.assertEqual(self.metrics.registry.get_sample_value(
            "runnergw_exchanges_in_progress"), 1.0)
