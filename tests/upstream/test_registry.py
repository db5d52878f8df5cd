"""The registry of runner hosts: one host per key, kept while settings name it, closed when
they no longer do."""

from __future__ import annotations

from pathlib import Path

import attrs
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.runner_pool import PoolSettings, RunnerHost
from runnergw.config.runners import RunnerSettings
from runnergw.upstream.registry import UpstreamHosts, host_key

__all__ = ["UpstreamHostsTests"]

_A = RunnerHost("10.0.0.1", 11434)
_B = RunnerHost("10.0.0.2", 11434)


def _runner(name: str = "gpu", *hosts: RunnerHost, **settings: object) -> RunnerSettings:
    hosts = hosts or (_A, _B)
    return RunnerSettings(name=name, path="/", host=hosts[0].host, port=hosts[0].port,
                          hosts=hosts, **settings)  # type: ignore[arg-type]


class UpstreamHostsTests(SynchronousTestCase):
    """``get_or_create`` and ``retain``, as a reload uses them."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.registry = UpstreamHosts(self.reactor)

    def test_same_key_same_host(self) -> None:
        """Asking again for a host (settings read again, or another runner naming it) gives
        the same host, with its connections and health."""
        first = self.registry.get_or_create(_runner(), _A)
        again = self.registry.get_or_create(_runner("other"), _A)
        self.assertIs(first, again)
        self.assertIsNot(first, self.registry.get_or_create(_runner(), _B))
        self.assertEqual(len(self.registry.keys()), 2)

    def test_changed_settings_make_a_new_host(self) -> None:
        """A host whose connection or pool settings changed is a new host."""
        first = self.registry.get_or_create(_runner(), _A)
        for changed in (_runner(connect_timeout=3.0), _runner(max_connections=2),
                        _runner(pool=PoolSettings(eject_after=9)),
                        _runner(scheme="https")):
            self.assertIsNot(self.registry.get_or_create(changed, _A), first)

    def test_named_for_logs(self) -> None:
        """A host's connection pool is named after its runner, and its address when the
        runner has several."""
        alone = self.registry.get_or_create(_runner("solo", _A), _A)
        shared = self.registry.get_or_create(_runner("gpu"), _B)
        self.assertEqual((alone.pool.name, shared.pool.name), ("solo", "gpu 10.0.0.2:11434"))

    def test_retain_closes_the_others(self) -> None:
        """Hosts whose keys are kept stay as they are; the others are closed (probes and
        polls stopped) and forgotten."""
        kept = self.registry.get_or_create(_runner(), _A)
        dropped = self.registry.get_or_create(_runner(), _B)
        dropped.start_checks(at_once=True)
        self.successResultOf(self.registry.retain([host_key(_runner(), _A)]))
        self.assertEqual(self.registry.keys(), {kept.key})
        self.assertTrue(dropped.pool._closing)
        self.assertFalse(kept.pool._closing)
        connects = len(self.reactor.tcpClients)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.tcpClients), connects)
        self.assertIsNot(self.registry.get_or_create(_runner(), _B), dropped)

    def test_close_closes_every_host(self) -> None:
        """At shutdown every host is closed."""
        host = self.registry.get_or_create(_runner(), _A)
        self.successResultOf(self.registry.close())
        self.assertEqual((self.registry.keys(), host.pool._closing), (frozenset(), True))

    def test_unreadable_ca_bundle(self) -> None:
        """An ``https`` runner whose CA bundle cannot be read makes no host."""
        missing = str(Path(self.mktemp()) / "ca.pem")
        runner = attrs.evolve(_runner(), scheme="https", ca_path=missing)
        self.assertRaises(FileNotFoundError, self.registry.get_or_create, runner, _A)
        self.assertEqual(self.registry.keys(), frozenset())
