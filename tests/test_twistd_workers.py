"""A real ``twistd runnergw`` with ``server.workers: 2`` in front of the fake Ollama: both
workers serve the shared socket, systemd hears READY once both do, SIGHUP reloads both,
SIGTERM drains both, a worker killed is started again, and ``/metrics`` gathers both."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred, gatherResults
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from tests.helpers.gateway import start_fake_ollama
from tests.helpers.workers_twistd import LoggedTwistd, ServiceManager, start_twistd

__all__ = ["TwistdWorkersTests"]

BATCH = 16
"""Requests sent at once, each on a new connection."""


class TwistdWorkersTests(TestCase):
    """Two workers behind one supervisor, seen by a client, an operator and systemd."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.fake, port = start_fake_ollama(self)
        self.document: dict[str, Any] = {
            "runners": [{"host": f"127.0.0.1:{port}", "path": "/ollama",
                         "filters": ["rewrite", "audit"],
                         "rewrite": {"setResponseHeaders": {"X-Settings": "first"}}}],
            "server": {"address": "127.0.0.1:0", "workers": 2},
            "audit": {"path": ""},
            "metrics": {"address": "127.0.0.1:0"},
            "shutdown": {"readinessDelay": "0s", "grace": "5s"},
        }
        # No pool: every request on a new connection, which either worker may accept.
        self.agent = Agent(reactor)

    async def start(self) -> tuple[LoggedTwistd, ServiceManager, str]:
        process, manager = start_twistd(self, self.directory, self.document)
        ready = await manager.next_starting("READY=1")
        self.url = await process.listening
        self.metrics_url = await process.metrics_listening
        return process, manager, ready

    async def batch(self) -> list[tuple[int, str]]:
        """``BATCH`` requests at once: each one's status and ``X-Settings``."""

        async def one() -> tuple[int, str]:
            response = await self.agent.request(b"GET", (self.url + "/ollama/api/tags").encode())
            await readBody(response)
            values = response.headers.getRawHeaders(b"x-settings", [b""])
            return response.code, values[0].decode()

        return await gatherResults([ensureDeferred(one()) for _ in range(BATCH)])

    async def served_by_worker(self) -> dict[str, float]:
        """Requests each worker counted, from the supervisor's ``/metrics``."""
        response = await self.agent.request(b"GET", (self.metrics_url + "/metrics").encode())
        text = (await readBody(response)).decode()
        served: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            if family.name == "runnergw_requests":
                for sample in family.samples:
                    if sample.name == "runnergw_requests_total":
                        worker = sample.labels["worker"]
                        served[worker] = served.get(worker, 0) + sample.value
        return served

    async def test_readyz_ready(self) -> None:
        """Once both workers serve, the supervisor's /readyz answers ready."""
        await self.start()
        response = await self.agent.request(b"GET", (self.metrics_url + "/readyz").encode())
        self.assertEqual((response.code, await readBody(response)), (200, b"ready\n"))

    async def test_ready_once_every_worker_serves(self) -> None:
        """The first message systemd gets is READY=1, once both workers serve, with the
        workers' count in the status; a request right after is served."""
        process, _, ready = await self.start()
        self.assertTrue(ready.startswith("READY=1\nSTATUS=2 of 2 workers serving on "
                                         "http://127.0.0.1:"), ready)
        self.assertEqual({e["worker"] for e in process.events_named("worker_started")}, {0, 1})
        self.assertEqual([status for status, _ in await self.batch()], [200] * BATCH)

    async def test_both_workers_serve(self) -> None:
        """Requests on new connections are spread over both workers: the merged /metrics
        (parsed as Prometheus parses it) counts requests under worker="0" and worker="1",
        and together exactly those sent."""
        await self.start()
        sent = 0
        served: dict[str, float] = {}
        while sent < 20 * BATCH and len(served) < 2:
            self.assertEqual([status for status, _ in await self.batch()], [200] * BATCH)
            sent += BATCH
            served = {w: n for w, n in (await self.served_by_worker()).items() if n}
        self.assertEqual(set(served), {"0", "1"})
        self.assertEqual(sum(served.values()), sent)

    async def test_reload_reaches_every_worker(self) -> None:
        """SIGHUP: systemd hears RELOADING=1, then READY=1 once both workers reloaded, and
        every answer after it carries the new settings."""
        process, manager, _ = await self.start()
        self.assertEqual({v for _, v in await self.batch()}, {"first"})
        reloaded = [process.next_event("reloaded", worker=worker) for worker in (0, 1)]
        self.document["runners"][0]["rewrite"]["setResponseHeaders"]["X-Settings"] = "second"
        (self.directory / "settings.yaml").write_text(yaml.safe_dump(self.document))
        os.kill(process.transport.pid, signal.SIGHUP)  # type: ignore[union-attr]
        self.assertTrue((await manager.next_starting("RELOADING=1")).startswith("RELOADING=1"))
        await manager.next_starting("READY=1")
        await gatherResults(reloaded)
        for _ in range(3):
            self.assertEqual(await self.batch(), [(200, "second")] * BATCH)

    async def test_refused_reload_reported(self) -> None:
        """SIGHUP with settings every worker refuses: the supervisor does not say every
        worker reloaded, it says which refused, /metrics counts the refusals, and the
        answers carry the previous settings."""
        process, manager, _ = await self.start()
        report = process.next_event("workers_reload_refused")
        self.document["runners"][0]["rewrite"]["setResponseHeaders"]["X-Settings"] = 7
        (self.directory / "settings.yaml").write_text(yaml.safe_dump(self.document))
        os.kill(process.transport.pid, signal.SIGHUP)  # type: ignore[union-attr]
        await manager.next_starting("READY=1")
        event = await report
        self.assertEqual((event["refused"], process.events_named("workers_reloaded")), ([0, 1], []))
        self.assertEqual(event["workers"], "worker 0 refused the reload, worker 1 refused "
                                           "the reload")
        response = await self.agent.request(b"GET", (self.metrics_url + "/metrics").encode())
        text = (await readBody(response)).decode()
        self.assertIn('runnergw_worker_reloads_total{result="refused",worker="1"} 1.0', text)
        self.assertEqual({v for _, v in await self.batch()}, {"first"})

    async def test_sigterm_drains_every_worker(self) -> None:
        """SIGTERM: systemd hears STOPPING=1, both workers drain cleanly and the supervisor
        exits 0."""
        process, manager, _ = await self.start()
        await self.batch()
        os.kill(process.transport.pid, signal.SIGTERM)  # type: ignore[union-attr]
        stopping = await manager.next_starting("STOPPING=1")
        self.assertIn("draining", stopping)
        self.assertEqual(await process.ended, 0, process.output[-4000:])
        self.assertEqual({e["worker"] for e in process.events_named("drain_over")}, {0, 1})
        stopped = process.events_named("worker_stopped")
        self.assertEqual(sorted(e["status"] for e in stopped), [0, 0])

    async def test_killed_worker_started_again(self) -> None:
        """A worker killed with -9 is logged, /readyz names it until it is started again
        (it listens once more), serving goes on, and /metrics counts the restart."""
        process, _, _ = await self.start()
        pid = [e["pid"] for e in process.events_named("worker_started") if e["worker"] == 1][0]
        died = process.next_event("worker_died", worker=1)
        listening = process.next_event("listening", worker=1)
        os.kill(pid, signal.SIGKILL)
        event = await died
        self.assertEqual((event["pid"], event["delay"]), (pid, 1.0))
        # Started again 1 s later at the soonest: meanwhile the gateway is not ready.
        response = await self.agent.request(b"GET", (self.metrics_url + "/readyz").encode())
        self.assertEqual((response.code, await readBody(response)),
                         (503, b"not ready\nworker 1: not serving\n"))
        await listening
        restarted = [e["pid"] for e in process.events_named("worker_started") if e["worker"] == 1]
        self.assertEqual(len(restarted), 2)
        self.assertEqual([status for status, _ in await self.batch()], [200] * BATCH)
        response = await self.agent.request(b"GET", (self.metrics_url + "/metrics").encode())
        text = (await readBody(response)).decode()
        self.assertIn('runnergw_worker_restarts_total{worker="1"} 1.0', text)
