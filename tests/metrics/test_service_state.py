"""Connections, exchanges under way, draining and reloads, read at scrape time."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from prometheus_client import CollectorRegistry
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.inflight import InFlight
from runnergw.health import Readiness
from runnergw.metrics.service_state import ServiceStateCollector

__all__ = ["ServiceStateTests"]


class ServiceStateTests(SynchronousTestCase):
    """What the service has now, not when it was last told."""

    def setUp(self) -> None:
        self.inflight = InFlight()
        self.service: Any = SimpleNamespace(
            factory=SimpleNamespace(connections={object(), object()}, refused={},
                                    handler=SimpleNamespace(inflight=self.inflight)),
            readiness=Readiness(), reload_results={"ok": 0, "failed": 0})
        self.registry = CollectorRegistry()
        self.registry.register(ServiceStateCollector(self.service))

    def value(self, name: str, **labels: str) -> float | None:
        return self.registry.get_sample_value(name, labels)

    def test_connections_and_exchanges(self) -> None:
        """Open connections and exchanges under way, as they are at the scrape."""
        self.inflight.enter()
        self.assertEqual(self.value("runnergw_open_connections"), 2.0)
        self.assertEqual(self.value("runnergw_exchanges_in_progress"), 1.0)
        self.inflight.leave()
        self.assertEqual(self.value("runnergw_exchanges_in_progress"), 0.0)

    def test_reloads(self) -> None:
        """The reload counts the reload code keeps, by result."""
        self.assertEqual(self.value("runnergw_reloads_total", result="failed"), 0.0)
        self.service.reload_results["ok"] = 3
        self.service.reload_results["failed"] = 1
        self.assertEqual(self.value("runnergw_reloads_total", result="ok"), 3.0)
        self.assertEqual(self.value("runnergw_reloads_total", result="failed"), 1.0)

    def test_draining(self) -> None:
        """1 once a stop began."""
        self.assertEqual(self.value("runnergw_draining"), 0.0)
        self.service.readiness.draining = True
        self.assertEqual(self.value("runnergw_draining"), 1.0)

    def test_refused_before_any_route(self) -> None:
        """Requests the HTTP server refused by itself are counted by status."""
        self.assertIsNone(self.value("runnergw_http_refused_total", status="400"))
        self.service.factory.refused.update({400: 2, 431: 1})
        self.assertEqual(self.value("runnergw_http_refused_total", status="400"), 2.0)
        self.assertEqual(self.value("runnergw_http_refused_total", status="431"), 1.0)

