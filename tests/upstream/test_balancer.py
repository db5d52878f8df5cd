"""Which host of a runner takes a request: the least busy healthy one, in turn on ties; one
with the model loaded when it is not much busier; an ejected one only when all are."""

from __future__ import annotations

import json

from twisted.internet.error import ConnectionRefusedError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.upstream.balancer import HostBalancer, HostStatus
from runnergw.upstream.host import UpstreamHost
from tests.helpers.fake_hosts import ScriptedPool, answer, make_balancer

__all__ = ["AffinityTests", "EjectedHostTests", "LeastBusyTests", "StatusTests"]


def _eject(testcase: SynchronousTestCase, host: UpstreamHost, pool: ScriptedPool) -> None:
    for _ in range(host.options.eject_after):
        failing = host.acquire()
        pool.refuse()
        testcase.failureResultOf(failing, ConnectionRefusedError)


def _load(balancer: HostBalancer, pools: list[ScriptedPool], loaded: dict[int, list[str]]
          ) -> None:
    """Start polling; host ``i`` answers ``/api/ps`` with ``loaded[i]`` (none by default)."""
    balancer.start()
    for index, pool in enumerate(pools):
        models = [{"name": name} for name in loaded.get(index, [])]
        answer(pool.open()[0], 200, json.dumps({"models": models}).encode())


class LeastBusyTests(SynchronousTestCase):
    """Healthy hosts share the load by their requests under way."""

    def test_fewest_requests_under_way(self) -> None:
        """The host with the fewest requests under way is chosen."""
        balancer, _ = make_balancer(Clock(), 3)
        a, b, c = balancer.hosts
        a.active, b.active, c.active = 2, 0, 1
        self.assertIs(balancer.choose(), b)

    def test_ties_taken_in_turn(self) -> None:
        """Equally busy hosts are taken one after the other."""
        balancer, _ = make_balancer(Clock(), 3)
        chosen = [balancer.choose() for _ in range(6)]
        self.assertEqual([host.address for host in chosen],
                         ["10.0.0.1:11434", "10.0.0.2:11434", "10.0.0.3:11434"] * 2)

    def test_hosts_already_tried_left_out(self) -> None:
        """A request that could not reach a host is not sent there again; with every
        healthy host tried there is none left."""
        balancer, _ = make_balancer(Clock(), 2)
        a, b = balancer.hosts
        self.assertIs(balancer.choose(exclude=[a]), b)
        self.assertIsNone(balancer.choose(exclude=[a, b]))


class EjectedHostTests(SynchronousTestCase):
    """An ejected host gets nothing while another is healthy."""

    def test_ejected_host_skipped(self) -> None:
        """Even idle, an ejected host is passed over for a busy healthy one."""
        balancer, pools = make_balancer(Clock(), 2, eject_after=1)
        a, b = balancer.hosts
        _eject(self, a, pools[0])
        b.active = 10
        self.assertEqual({balancer.choose() for _ in range(3)}, {b})

    def test_no_ejected_host_after_the_healthy_ones_failed(self) -> None:
        """A request that failed on every healthy host is not sent to an ejected one."""
        balancer, pools = make_balancer(Clock(), 2, eject_after=1)
        a, b = balancer.hosts
        _eject(self, a, pools[0])
        self.assertIsNone(balancer.choose(exclude=[b]))

    def test_all_ejected_soonest_first(self) -> None:
        """With every host ejected, the one whose ejection ends soonest is tried, then the
        next; each once."""
        clock = Clock()
        balancer, pools = make_balancer(clock, 2, eject_after=1, eject_for=5.0)
        a, b = balancer.hosts
        _eject(self, b, pools[1])
        clock.advance(1.0)
        _eject(self, a, pools[0])
        self.assertIs(balancer.choose(), b)
        self.assertIs(balancer.choose(exclude=[b]), a)
        self.assertIsNone(balancer.choose(exclude=[b, a]))

    def test_idle_runner_with_its_host_down_not_ready(self) -> None:
        """With no request coming, a runner whose only host stopped answering is not ready
        after ``ejectAfter`` failed checks, and ready again once its probe is answered."""
        clock = Clock()
        balancer, pools = make_balancer(clock, 1, eject_after=3, ps_interval=5.0,
                                        eject_for=1.0)
        balancer.start()
        for _ in range(3):
            self.assertEqual(balancer.not_ready_reasons(), [])
            clock.advance(5.0)
            pools[0].refuse()
        self.assertEqual(balancer.not_ready_reasons(), ["runner gpu: no healthy host"])
        clock.advance(1.0)
        answer(pools[0].open()[0], 200, b'{"version":"0.12.0"}')
        self.assertEqual(balancer.not_ready_reasons(), [])

    def test_not_ready_without_a_healthy_host(self) -> None:
        """The runner is not ready once its last healthy host is ejected."""
        balancer, pools = make_balancer(Clock(), 2, eject_after=1)
        _eject(self, balancer.hosts[0], pools[0])
        self.assertEqual(balancer.not_ready_reasons(), [])
        _eject(self, balancer.hosts[1], pools[1])
        self.assertEqual(balancer.not_ready_reasons(), ["runner gpu: no healthy host"])


class AffinityTests(SynchronousTestCase):
    """A request naming a model prefers a host that has it loaded, within the slack."""

    def test_host_with_the_model_preferred(self) -> None:
        """A slightly busier host that has the model loaded wins over an idle one."""
        balancer, pools = make_balancer(Clock(), 2, affinity_slack=2)
        _load(balancer, pools, {1: ["llama3.2:1b"]})
        a, b = balancer.hosts
        b.active = 2
        self.assertEqual({balancer.choose("llama3.2:1b") for _ in range(3)}, {b})

    def test_too_busy_beyond_the_slack(self) -> None:
        """A host more than ``affinitySlack`` busier than the least busy one is not
        preferred for its model."""
        balancer, pools = make_balancer(Clock(), 2, affinity_slack=2)
        _load(balancer, pools, {1: ["llama3.2:1b"]})
        a, b = balancer.hosts
        b.active = 3
        self.assertIs(balancer.choose("llama3.2:1b"), a)

    def test_least_busy_of_the_warm_hosts(self) -> None:
        """Among hosts that have the model, the least busy one."""
        balancer, pools = make_balancer(Clock(), 3, affinity_slack=2)
        _load(balancer, pools, {1: ["llama3.2:1b"], 2: ["llama3.2:1b"]})
        a, b, c = balancer.hosts
        b.active, c.active = 2, 1
        self.assertIs(balancer.choose("llama3.2:1b"), c)

    def test_no_model_named(self) -> None:
        """A request whose model no filter read goes to the least busy host."""
        balancer, pools = make_balancer(Clock(), 2, affinity_slack=2)
        _load(balancer, pools, {1: ["llama3.2:1b"]})
        balancer.hosts[1].active = 1
        self.assertIs(balancer.choose(None), balancer.hosts[0])

    def test_affinity_off(self) -> None:
        """With ``affinity: false`` loaded models are neither read nor considered: the
        hosts' checks ask ``/api/version``, a probe interval after the start."""
        clock = Clock()
        balancer, pools = make_balancer(clock, 2, affinity=False, probe_interval=2.0)
        balancer.start()
        self.assertEqual([pool.waiting for pool in pools], [[], []])
        clock.advance(2.0)
        for pool in pools:
            connection, transport = pool.open()
            self.assertTrue(transport.value().startswith(b"GET /api/version HTTP/1.1\r\n"))
            answer(connection, 200, b'{"version":"0.12.0"}')
        self.assertEqual([host.loaded_models for host in balancer.hosts], [(), ()])
        balancer.hosts[0].active = 1
        self.assertIs(balancer.choose("llama3.2:1b"), balancer.hosts[1])

    def test_single_host_checked_an_interval_later(self) -> None:
        """A runner of one host has nothing to choose: its ``/api/ps`` is not read at the
        start, but every ``psInterval`` from then on as its health check."""
        clock = Clock()
        balancer, pools = make_balancer(clock, 1, ps_interval=5.0)
        balancer.start()
        self.assertEqual(pools[0].waiting, [])
        clock.advance(5.0)
        connection, transport = pools[0].open()
        self.assertTrue(transport.value().startswith(b"GET /api/ps HTTP/1.1\r\n"))


class StatusTests(SynchronousTestCase):
    """What the metrics read of each host."""

    def test_statuses(self) -> None:
        """Runner, configured address, health, ejections, requests under way and loaded
        models of each host."""
        balancer, pools = make_balancer(Clock(), 2, eject_after=1)
        _load(balancer, pools, {0: ["llama3.2:1b"]})
        _eject(self, balancer.hosts[1], pools[1])
        balancer.hosts[0].active = 4
        self.assertEqual(balancer.statuses(), (
            HostStatus("gpu", "10.0.0.1:11434", True, 0, 4, ("llama3.2:1b",)),
            HostStatus("gpu", "10.0.0.2:11434", False, 1, 0, ())))
