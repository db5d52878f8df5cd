"""A runner of two real (fake) Ollama hosts on loopback, one killed mid-run: requests not yet
sent go on to the other without a failure, a stream that had started on the killed host is not
replayed, the host is ejected, and readmitted once it listens again."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.trial.unittest import TestCase

from tests.helpers.clients import AuditTap, RawResponse, parse_response, raw_connect, raw_exchange
from tests.helpers.gateway import RunningGateway, start_gateway
from tests.helpers.killable_ollama import KillableOllama, LogWatch
from tests.helpers.ollama_proxy import generate_request

__all__ = ["AffinityTests", "KilledHostTests"]


class KilledHostTests(TestCase):
    """Two hosts behind ``/pool``; the first is killed while the gateway serves."""

    timeout = 20

    def setUp(self) -> None:
        self.hosts = [KillableOllama(reactor), KillableOllama(reactor)]
        for host in self.hosts:
            self.addCleanup(host.stop)
        self.log = LogWatch()
        self.addCleanup(self.log.close)
        self.gateway: RunningGateway = start_gateway(self, [{
            "name": "pool", "path": "/pool", "hosts": [host.address for host in self.hosts],
            "pool": {"ejectAfter": 1, "ejectFor": "200ms", "probeInterval": "100ms"},
        }])

    async def generate(self, **options: Any) -> RawResponse:
        return await raw_exchange(self, self.gateway, generate_request(
            self.gateway, "/pool", extra_headers=b"Connection: close\r\n", **options))

    async def batch(self, count: int) -> list[RawResponse]:
        return await gatherResults([ensureDeferred(self.generate()) for _ in range(count)])

    async def test_requests_go_on_and_the_host_comes_back(self) -> None:
        """After the kill every request is answered whole (by the other host), the killed
        host is ejected once, and after it listens again it is readmitted and served."""
        killed, other = self.hosts
        before = await self.batch(4)
        self.assertEqual([r.status for r in before], [200] * 4)
        self.assertEqual((len(killed.generations()), len(other.generations())), (2, 2))
        await killed.kill()
        after = [response for _ in range(3) for response in await self.batch(4)]
        self.assertEqual([(r.status, r.complete) for r in after], [(200, True)] * 12)
        self.assertEqual((len(killed.generations()), len(other.generations())), (2, 14))
        ejected = await self.log.wait("upstream_host_ejected", host=killed.address)
        self.assertEqual(ejected["runner"], "pool")
        self.assertEqual(self.gateway.service.readiness.reasons(), [])
        killed.revive()
        await self.log.wait("upstream_host_readmitted", host=killed.address)
        self.assertEqual(len(self.log.named("upstream_host_ejected")), 1)
        again = await self.batch(4)
        self.assertEqual([r.status for r in again], [200] * 4)
        self.assertGreater(len(killed.generations()), 2)

    async def test_stream_on_the_killed_host_not_replayed(self) -> None:
        """A stream under way on the host that dies ends cut for its client; the other host
        never sees that generation."""
        for host in self.hosts:
            host.fake.gated = True
        audit = AuditTap(self, self.gateway)
        client = await raw_connect(self, self.gateway)
        client.send(generate_request(self.gateway, "/pool", num_predict=5))
        await client.wait_for(b'"t0 "')
        [running] = [host for host in self.hosts if host.generations()]
        [idle] = [host for host in self.hosts if host is not running]
        await running.kill()
        await client.lost
        response = parse_response(client.data)
        self.assertEqual((response.status, response.complete), (200, False))
        self.assertEqual(idle.generations(), [])
        await audit.written()
        [record] = self.gateway.audit_records()
        self.assertEqual(record["outcome"], "upstream_error")

    async def test_every_host_down(self) -> None:
        """With both hosts down the client gets a clear 502, and readiness names the
        runner."""
        for host in self.hosts:
            await host.kill()
        response = await self.generate()
        self.assertEqual((response.status, response.body),
                         (502, b'{"error": "runner pool is unreachable"}'))
        self.assertEqual(self.gateway.service.readiness.reasons(),
                         ["runner pool: no healthy host"])


async def _polled(host: KillableOllama) -> None:
    """Once the gateway read the host's loaded models (``/api/ps`` answered)."""
    while not any(seen.path == "/api/ps" for seen in host.fake.checks):
        await host.fake.next_check()
    [poll, *_] = [seen for seen in host.fake.checks if seen.path == "/api/ps"]
    await poll.finished


class AffinityTests(TestCase):
    """With a ``roles`` section, the access filter reads the model, and the host that has
    it loaded gets the request."""

    timeout = 20

    async def test_model_loaded_on_one_host(self) -> None:
        """Every request for a model goes to the host that has it loaded (one request at a
        time: never more than the slack busier than the other)."""
        cold, warm = KillableOllama(reactor), KillableOllama(reactor)
        for host in (cold, warm):
            self.addCleanup(host.stop)
        cold.fake.models, warm.fake.models = ["qwen2.5:7b"], ["llama3.2:1b"]
        gateway = start_gateway(self, [{"name": "pool", "path": "/pool",
                                        "hosts": [cold.address, warm.address]}],
                                roles={"user": {"models": ["*"]}})
        await _polled(cold)
        await _polled(warm)
        for _ in range(4):
            response = await raw_exchange(self, gateway, generate_request(
                gateway, "/pool", extra_headers=b"Connection: close\r\n"))
            self.assertEqual(response.status, 200)
        self.assertEqual((len(cold.generations()), len(warm.generations())), (0, 4))
