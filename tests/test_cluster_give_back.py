"""A real gateway node stopping or reloading with a concurrency slot held in Redis: what it
gave back reaches Redis, nothing is left held until the slot expiry."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import deferLater

from tests.helpers.cluster import ClusterCase, ClusterNode
from tests.helpers.redis_limits import connect, redis_settings

__all__ = ["CapUnderLoadTests", "StopGivesBackTests"]

_GENERATE = "/ollama/api/generate"
_STREAM = {"model": "llama3.2:1b", "prompt": "hi", "stream": True}


class StopGivesBackTests(ClusterCase):
    """Slots held by a node that stops or reloads are free in Redis at once."""

    async def held_slots(self) -> int:
        """Concurrency slots held in Redis, every subject counted."""
        connection = connect(self, redis_settings(self.redis))
        keys = await connection.call("KEYS", "cluster:slots:*")
        return sum([await connection.call("ZCARD", key) for key in keys])

    async def streaming(self, node: ClusterNode, role: dict[str, Any]) -> Any:
        """A stream under way on ``node``, held by the fake Ollama after its first line."""
        self.fake.gated = True
        arrived = self.fake.next_request()
        stream = ensureDeferred(self.call(node, _GENERATE, _STREAM))
        await (await arrived).held()
        return stream

    async def test_slot_free_after_sigterm(self) -> None:
        """A node stopped (SIGTERM) while a stream holds a slot, its grace over: right
        after it exits, Redis holds no slot of it (not until limits.slotExpiry)."""
        node = await self.start_node("one", {"concurrency": 4}, {"slotExpiry": "60s"})
        stream = await self.streaming(node, {"concurrency": 4})
        stream.addErrback(lambda _: None)
        self.assertEqual(await self.held_slots(), 1)
        node.transport.signalProcess("TERM")  # type: ignore[union-attr]
        await node.ended
        self.assertEqual(await self.held_slots(), 0)

    async def test_slot_free_after_a_reload(self) -> None:
        """A stream that began before a reload (SIGHUP) and ends after it gives its slot
        back: a cap of 1 then lets the next request in at once."""
        role = {"concurrency": 1}
        node = await self.start_node("one", role, {"slotExpiry": "60s",
                                                   "onRedisError": {"concurrency": "closed"}})
        stream = await self.streaming(node, role)
        await deferLater(reactor, 0, lambda: None)  # the fake done holding its piece
        reloaded = node.next_event("reloaded")
        node.transport.signalProcess("HUP")  # type: ignore[union-attr]
        await reloaded
        self.fake.gated = False
        for record in self.fake.requests:
            record.gated = False
            record.release()
        self.assertEqual((await stream)[0], 200)
        self.assertEqual((await self.call(node, _GENERATE, dict(_STREAM, stream=False)))[0],
                         200)

    async def test_slot_given_back_while_redis_stalls(self) -> None:
        """A stream ends while Redis stalls (its give-back unanswered, the connection given
        up, the node degraded): once Redis goes on and the node sees it, the place is freed
        in Redis within seconds, long before limits.slotExpiry (60 s), and the next request
        on a cap of 1 is served."""
        role = {"concurrency": 1}
        node = await self.start_node("one", role, {
            "slotExpiry": "60s", "redisTimeout": "50ms",
            "onRedisError": {"concurrency": "closed"}})
        stream = await self.streaming(node, role)
        self.redis.pause()
        given_up = node.next_event("redis_connection_given_up")
        await deferLater(reactor, 0, lambda: None)  # the fake done holding its piece
        self.fake.gated = False
        for record in self.fake.requests:
            record.gated = False
            record.release()
        self.assertEqual((await stream)[0], 200)
        await given_up
        recovered = node.when_logged("limiter_recovered", limit="quota")  # the last
        self.redis.resume()
        await recovered
        while await self.held_slots():
            await deferLater(reactor, 0.05, lambda: None)
        status, _, body = await self.call(node, _GENERATE, dict(_STREAM, stream=False))
        self.assertEqual(status, 200, body)


class CapUnderLoadTests(ClusterCase):
    """A cap shared by two nodes while places are given back in gathered calls."""

    async def test_cap_never_exceeded(self) -> None:
        """A cap of 3, 24 short streams sent at once to two nodes, waiting for a place:
        Ollama never has more than 3 of them under way, and every one is served."""
        role = {"concurrency": 3, "concurrencyWait": "30s"}
        nodes = [await self.start_node("one", role), await self.start_node("two", role)]
        under_way = [0, 0]  # now, most
        render = self.fake.render

        def counted(request: Any) -> Any:
            if request.path.endswith(b"/generate"):
                under_way[0] += 1
                under_way[1] = max(under_way)

                def ended(_: object) -> None:
                    under_way[0] -= 1

                request.notifyFinish().addBoth(ended)
            return render(request)

        self.fake.render = counted  # type: ignore[method-assign]
        calls = [ensureDeferred(self.call(nodes[i % 2], _GENERATE, dict(
            _STREAM, options={"num_predict": 4, "delay": 0.01}))) for i in range(24)]
        results = await DeferredList(calls, fireOnOneErrback=True, consumeErrors=True)
        self.assertEqual([result[1][0] for result in results], [200] * 24)
        self.assertEqual(under_way[1], 3)
