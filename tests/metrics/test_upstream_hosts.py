"""The runners' hosts as their terminals tell them: health, ejections, requests under way."""

from __future__ import annotations

from typing import Any

import attrs
from prometheus_client import CollectorRegistry
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.route import Route
from runnergw.metrics.upstream_hosts import UpstreamHostCollector

__all__ = ["UpstreamHostTests"]


@attrs.frozen
class _Host:
    runner: str
    host: str
    healthy: bool
    ejections: int
    active: int
    loaded_models: tuple[str, ...] = ()


class _PoolTerminal:
    """A runner terminal with several hosts (as a pool reports them)."""

    def __init__(self, hosts: list[_Host]) -> None:
        self.hosts = hosts

    def upstream_hosts(self) -> list[_Host]:
        return self.hosts


class UpstreamHostTests(SynchronousTestCase):
    """``runnergw_upstream_host_*`` by runner and host."""

    def setUp(self) -> None:
        self.pool = _PoolTerminal([_Host("gpu", "10.0.0.1:11434", True, 0, 2),
                                   _Host("gpu", "10.0.0.2:11434", False, 3, 0)])
        self.routes: list[Any] = [Route("gpu", ("gpu",), (), self.pool),  # type: ignore[arg-type]
                                  Route("other", ("other",), (), object()),  # type: ignore[arg-type]
                                  Route("", (), (), None)]
        self.registry = CollectorRegistry()
        self.registry.register(UpstreamHostCollector(lambda: self.routes))

    def value(self, name: str, host: str) -> float | None:
        return self.registry.get_sample_value(name, {"runner": "gpu", "host": host})

    def test_hosts(self) -> None:
        """Each host's health, ejections and requests under way; terminals that report no
        hosts are left out."""
        first, second = "10.0.0.1:11434", "10.0.0.2:11434"
        self.assertEqual(self.value("runnergw_upstream_host_healthy", first), 1.0)
        self.assertEqual(self.value("runnergw_upstream_host_healthy", second), 0.0)
        self.assertEqual(self.value("runnergw_upstream_host_ejections_total", second), 3.0)
        self.assertEqual(self.value("runnergw_upstream_host_active_requests", first), 2.0)
        hosts = {sample.labels["host"] for family in self.registry.collect()
                 for sample in family.samples}
        self.assertEqual(hosts, {first, second})

    def test_read_at_scrape_time(self) -> None:
        """A host ejected since the last scrape shows so at the next."""
        self.pool.hosts[0] = _Host("gpu", "10.0.0.1:11434", False, 1, 0)
        self.assertEqual(self.value("runnergw_upstream_host_healthy", "10.0.0.1:11434"), 0.0)
        self.assertEqual(self.value("runnergw_upstream_host_ejections_total",
                                    "10.0.0.1:11434"), 1.0)

    def test_shared_terminal_once(self) -> None:
        """Two routes over the same runner report its hosts once."""
        self.routes.append(Route("gpu-again", ("again",), (), self.pool))  # type: ignore[arg-type]
        samples = [sample for family in self.registry.collect() for sample in family.samples
                   if sample.name == "runnergw_upstream_host_healthy"]
        self.assertEqual(len(samples), 2)
