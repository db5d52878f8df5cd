"""Two real gateway nodes sharing one Redis: limits and quotas hold across both exactly,
Redis going away follows the configured choice, and a killed node's slots come free."""

from __future__ import annotations

import time

from twisted.internet.defer import DeferredList, ensureDeferred

from tests.helpers.cluster import ClusterCase

__all__ = ["ClusterLimitTests", "ClusterQuotaMessageTests", "ClusterRedisAwayTests"]

_GENERATE = "/ollama/api/generate"


def _generation(stream: bool = False) -> dict[str, object]:
    return {"model": "llama3.2:1b", "prompt": "hi", "stream": stream}


class ClusterLimitTests(ClusterCase):
    """Limits counted once for the whole cluster."""

    async def test_rate_limit_across_nodes(self) -> None:
        """10 requests per minute: of 40 sent at once to two nodes, exactly 10 pass."""
        role = {"requestsPerMinute": 10, "burst": 10}
        nodes = [await self.start_node("one", role), await self.start_node("two", role)]
        calls = [ensureDeferred(self.call(nodes[i % 2], "/ollama/api/tags"))
                 for i in range(40)]
        results = await DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)
        statuses = sorted(result[1][0] for result in results)
        self.assertEqual(statuses, [200] * 10 + [429] * 30)

    async def test_concurrency_across_nodes(self) -> None:
        """A cap of 2: with one stream under way on each node, a third is refused on
        either."""
        role = {"concurrency": 2}
        one, two = await self.start_node("one", role), await self.start_node("two", role)
        self.fake.gated = True
        streams = []
        for node in (one, two):
            arrived = self.fake.next_request()
            streams.append(ensureDeferred(self.call(node, _GENERATE, _generation(True))))
            await (await arrived).held()
        for node in (one, two):
            status, headers, _ = await self.call(node, _GENERATE, _generation())
            self.assertEqual((status, headers.get("retry-after")), (429, "1"))
        for record in self.fake.requests:
            record.gated = False
            record.release()
        self.assertEqual([(await stream)[0] for stream in streams], [200, 200])

    async def test_quota_across_nodes(self) -> None:
        """A daily quota spent through one node is refused on the other."""
        role = {"tokensPerDay": 100, "maxTokens": 8}
        one, two = await self.start_node("one", role), await self.start_node("two", role)
        statuses = []
        while not statuses or statuses[-1] == 200:
            statuses.append((await self.call(one, _GENERATE, _generation()))[0])
            self.assertLess(len(statuses), 20)
        self.assertEqual(statuses[-1], 429, statuses)
        status, _, body = await self.call(two, _GENERATE, _generation())
        self.assertEqual(status, 429, body)

    async def test_killed_node_slots_expire(self) -> None:
        """A node killed with -9 while streaming holds its place only until the slot
        expiry: a request waiting on the other node then gets it."""
        role = {"concurrency": 1, "concurrencyWait": "20s"}
        # A cap of 1 on 2 nodes cannot fail open (each node would allow 1).
        closed = {"onRedisError": {"concurrency": "closed"}}
        one = await self.start_node("one", role, {"slotExpiry": "2s", **closed})
        two = await self.start_node("two", role, {"slotExpiry": "2s", **closed})
        self.fake.gated = True
        arrived = self.fake.next_request()
        stream = ensureDeferred(self.call(one, _GENERATE, _generation(True)))
        stream.addErrback(lambda _: None)  # its node is killed below
        await (await arrived).held()
        self.fake.gated = False
        await one.kill()
        killed = time.monotonic()
        status, _, _ = await self.call(two, _GENERATE, _generation())
        self.assertEqual(status, 200)
        self.assertGreater(time.monotonic() - killed, 0.5)


class ClusterRedisAwayTests(ClusterCase):
    """Redis killed while the nodes run, and back."""

    async def test_fail_closed_then_recovery(self) -> None:
        """Quotas failing closed: while Redis is down a generation gets 503 with
        ``Retry-After``; once Redis is back on its port, the same request is served."""
        node = await self.start_node("one", {"tokensPerDay": 1000},
                                     {"onRedisError": {"quota": "closed"}})
        self.assertEqual((await self.call(node, _GENERATE, _generation()))[0], 200)
        await self.redis.kill()
        status, headers, body = await self.call(node, _GENERATE, _generation())
        self.assertEqual((status, headers.get("retry-after")), (503, "2"), body)
        recovered = node.next_event("limiter_recovered")
        await self.redis.start()
        await recovered
        self.assertEqual((await self.call(node, _GENERATE, _generation()))[0], 200)

    async def test_fail_open_shares(self) -> None:
        """Rate limits failing open: while Redis is down a node allows its share (burst
        4 on 2 nodes: 2), and says so in its log."""
        node = await self.start_node("one", {"requestsPerMinute": 4, "burst": 4})
        await self.redis.kill()
        degraded = node.next_event("limiter_degraded")
        statuses = [(await self.call(node, "/ollama/api/tags"))[0] for _ in range(4)]
        self.assertEqual(statuses, [200, 200, 429, 429])
        self.assertEqual((await degraded)["choice"], "open")

    async def test_every_check_while_away(self) -> None:
        """A role with a rate limit, a cap and a quota (checked in one call): while Redis is
        down the quota, failing closed, refuses a generation with 503 and the rate limit,
        failing open, still lets a listing through; once Redis is back both are served."""
        node = await self.start_node("one", {"requestsPerMinute": 600, "burst": 100,
                                             "concurrency": 4, "tokensPerDay": 1000})
        self.assertEqual((await self.call(node, _GENERATE, _generation()))[0], 200)
        await self.redis.kill()
        status, headers, body = await self.call(node, _GENERATE, _generation())
        self.assertEqual((status, headers.get("retry-after"), body), (
            503, "2", b'{"error": "limits cannot be checked right now: retry shortly"}'))
        self.assertEqual((await self.call(node, "/ollama/api/tags"))[0], 200)
        recovered = node.next_event("limiter_recovered", limit="quota")
        await self.redis.start()
        await recovered
        self.assertEqual([(await self.call(node, path, body))[0] for path, body in (
            (_GENERATE, _generation()), ("/ollama/api/tags", None))], [200, 200])


class ClusterQuotaMessageTests(ClusterCase):
    """What a caller is told once the cluster spent its quota."""

    async def test_spent_elsewhere_same_message(self) -> None:
        """A quota spent through one node after the other node last saw some left: both
        nodes tell the caller the quota is spent until the day ends."""
        role = {"tokensPerDay": 100, "maxTokens": 8}
        one, two = await self.start_node("one", role), await self.start_node("two", role)
        self.assertEqual((await self.call(two, _GENERATE, _generation()))[0], 200)
        for _ in range(20):
            if (await self.call(one, _GENERATE, _generation()))[0] != 200:
                break
        bodies = [(await self.call(node, _GENERATE, _generation()))[2] for node in (one, two)]
        self.assertEqual(bodies, [b'{"error": "the daily token quota of role \\"user\\" (100) '
                                  b'is spent until the day ends"}'] * 2)
