"""A real ``twistd runnergw`` with roles, ``server.workers: 2`` and ``limits.backend:
redis`` (a real redis-server): a rate limit and a concurrency cap hold once for the gateway,
not once per worker, under concurrent load on many connections.

Which worker accepts a connection is the kernel's choice; the tests make it theirs by
stopping one worker (SIGSTOP) while the other takes a phase's connections, and check from
the supervisor's ``/metrics`` which worker answered each phase."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred, gatherResults
from twisted.web.client import Agent, readBody

from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from runnergw.usage.store import close_ledger_file, open_ledger_file
from tests.helpers.clients import BytesProducer, fetch
from tests.helpers.cluster import ClusterCase
from tests.helpers.workers_twistd import LoggedTwistd, start_twistd

__all__ = ["WorkersSharedLimitsTests"]

RATE = 10
"""The burst of the rate-limited role: requests it may make at once."""
REFILL = 2
"""Its requests per minute: one more every 30 s, none during a test."""
CAP = 2
"""Streams under way at once of the capped role."""


def _first_answers(calls: list[Deferred[Any]], count: int) -> Deferred[list[Any]]:
    """Fires with the first ``count`` results of ``calls``, in the order they came."""
    done: Deferred[list[Any]] = Deferred()
    answers: list[Any] = []

    def one(result: Any) -> Any:
        answers.append(result)
        if len(answers) == count:
            done.callback(list(answers))
        return result

    for call in calls:
        call.addCallback(one)
    return done


class WorkersSharedLimitsTests(ClusterCase):
    """Two workers of one gateway counting their limits in one Redis."""

    timeout = 60

    async def start_workers(self, role: dict[str, Any]) -> LoggedTwistd:
        """The gateway, once both workers serve; ``self.pids`` are the workers' pids."""
        document = self.document("workers", role)
        document["server"]["workers"] = 2
        # The ledger made beforehand: workers creating a new ledger at once can collide.
        close_ledger_file(open_ledger_file(document["policy"]["ledgerPath"],
                                           sqlite3.Connection))
        node, manager = start_twistd(self, self.directory, document)
        ready = ensureDeferred(manager.next_starting("READY=1"))
        _, first = await DeferredList([ready, node.ended], fireOnOneCallback=True)
        self.assertEqual(first, 0, node.output[-4000:])
        self.url = await node.listening
        self.metrics_url = await node.metrics_listening
        self.pids = {e["worker"]: e["pid"] for e in node.events_named("worker_started")}
        # A stopped worker is let go whatever happens, or the gateway could not drain.
        self.addCleanup(self.resume, 0)
        self.addCleanup(self.resume, 1)
        # No pool: every request on a new connection.
        self.fresh = Agent(reactor)
        return node

    def pause(self, worker: int) -> None:
        """The worker stops accepting (and answering) until ``resume``."""
        os.kill(self.pids[worker], signal.SIGSTOP)

    def resume(self, worker: int) -> None:
        try:
            os.kill(self.pids[worker], signal.SIGCONT)
        except ProcessLookupError:
            pass

    async def request(self, subject: str, path: str, body: Any = None
                      ) -> tuple[int, str | None]:
        """One request of ``subject`` on a new connection: its status and ``Retry-After``."""
        signing = load_signing_key((self.directory / "paseto.key").read_bytes(), 4)
        token = mint_token(signing, subject=subject, role="user", lifetime=600,
                           now=time.time())
        headers = {"Authorization": f"Bearer {token}"}
        producer = None
        if body is not None:
            headers["Content-Type"] = "application/json"
            producer = BytesProducer(json.dumps(body).encode())
        response, _ = await fetch(self.fresh, "POST" if body is not None else "GET",
                                  self.url + path, headers, producer)
        retry = response.headers.getRawHeaders(b"retry-after")
        return response.code, retry[0].decode() if retry else None

    async def served_by_worker(self) -> dict[str, float]:
        """Requests each worker answered so far, from the supervisor's ``/metrics``."""
        response = await self.fresh.request(b"GET", (self.metrics_url + "/metrics").encode())
        text = (await readBody(response)).decode()
        served = {"0": 0.0, "1": 0.0}
        for family in text_string_to_metric_families(text):
            if family.name == "runnergw_requests":
                for sample in family.samples:
                    if sample.name == "runnergw_requests_total":
                        served[sample.labels["worker"]] += sample.value
        return served

    async def burst(self, count: int, subject: str) -> list[int]:
        """``count`` requests at once, each on a new connection: their statuses, sorted."""
        calls = [ensureDeferred(self.request(subject, "/ollama/api/tags"))
                 for _ in range(count)]
        return sorted(status for status, _ in await gatherResults(calls))

    async def test_rate_limit_once_for_both_workers(self) -> None:
        """A burst of 10: 5 requests pass on worker 0; of 30 sent at once to worker 1 only
        5 pass; then of 20 sent at once to both, none: 10 in all."""
        await self.start_workers({"requestsPerMinute": REFILL, "burst": RATE})
        start = await self.served_by_worker()
        self.pause(1)
        first = await self.burst(RATE // 2, "rate")
        self.resume(1)
        middle = await self.served_by_worker()
        self.pause(0)
        second = await self.burst(3 * RATE, "rate")
        self.resume(0)
        end = await self.served_by_worker()
        third = await self.burst(2 * RATE, "rate")
        self.assertEqual(first, [200] * (RATE // 2))
        self.assertEqual(second, [200] * (RATE // 2) + [429] * (3 * RATE - RATE // 2))
        self.assertEqual(third, [429] * (2 * RATE))
        self.assertEqual((middle["0"] - start["0"], middle["1"] - start["1"]), (RATE // 2, 0))
        self.assertEqual((end["0"] - middle["0"], end["1"] - middle["1"]), (0, 3 * RATE))

    async def test_concurrency_cap_once_for_both_workers(self) -> None:
        """A cap of 2 with one stream under way on each worker (each opened while the other
        worker was stopped): of 20 more opened at once on 20 connections, all get 429
        while those run, and Ollama saw only the two; the two end normally."""
        await self.start_workers({"concurrency": CAP})
        self.fake.gated = True
        generation = {"model": "llama3.2:1b", "prompt": "hi", "stream": True}
        streams = []
        before = await self.served_by_worker()
        for worker in (0, 1):
            self.pause(1 - worker)
            arrived = self.fake.next_request()
            streams.append(ensureDeferred(self.request("cap", "/ollama/api/generate",
                                                       generation)))
            await (await arrived).held()
            self.resume(1 - worker)
        calls = [ensureDeferred(self.request("cap", "/ollama/api/generate", generation))
                 for _ in range(20)]
        refused = await _first_answers(calls, 20)
        self.assertEqual(refused, [(429, "1")] * 20)
        self.assertEqual(len(self.fake.requests), CAP)
        after = await self.served_by_worker()
        self.assertEqual(after["0"] - before["0"] + after["1"] - before["1"], 20)
        for record in self.fake.requests:
            record.gated = False
            record.release()
        self.assertEqual([status for status, _ in await gatherResults(streams)], [200, 200])
