"""The slots a node holds in Redis: kept alive while held, expiring once the node is gone."""

from __future__ import annotations

import time

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.helpers.killable_ollama import LogWatch
from tests.helpers.redis_limits import shared_state
from tests.helpers.redis_server import RedisServer

__all__ = ["HeldSlotTests"]


class HeldSlotTests(TestCase):
    """Slots held by a node, seen from another node."""

    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        return self.server.start()

    async def test_crashed_node_slots_expire(self) -> None:
        """A node that stops refreshing (it died) loses its places after the expiry."""
        crashed = shared_state(self, self.server, slot_expiry=1.0)
        await crashed.acquire_slot("alice", 1, 0)
        crashed.stop()  # no release, no refresh: as after kill -9
        other = shared_state(self, self.server, slot_expiry=1.0)
        started = time.monotonic()
        self.assertIsNotNone(await other.acquire_slot("alice", 1, 5))
        self.assertGreaterEqual(time.monotonic() - started, 0.5)

    async def test_expired_held_slot_counted_again(self) -> None:
        """A place still held whose entry expired in Redis (Redis away longer than the
        expiry, another node's take swept it) is counted again by the next refresh."""
        watch = LogWatch()
        self.addCleanup(watch.close)
        holder = shared_state(self, self.server, slot_expiry=1.0)
        slot = await holder.acquire_slot("alice", 1, 0)
        await holder.connection.call("ZREM", holder.key("slots", "alice"), slot.slot_id)
        await watch.wait("limiter_slots_counted_again", count=1)
        other = shared_state(self, self.server, slot_expiry=1.0)
        self.assertIsNone(await other.acquire_slot("alice", 1, 0))

    async def test_held_slots_refreshed(self) -> None:
        """A place held longer than the expiry stays held while its node lives."""
        holder = shared_state(self, self.server, slot_expiry=1.0)
        await holder.acquire_slot("alice", 1, 0)
        other = shared_state(self, self.server, slot_expiry=1.0)
        self.assertIsNone(await other.acquire_slot("alice", 1, 2.5))


    async def test_released_slot_seen_free_by_the_next_check(self) -> None:
        """A place released is given back before the node's next check: that check (for
        another subject) carries it, and another node finds the place free."""
        holder = shared_state(self, self.server)
        slot = await holder.acquire_slot("alice", 1, 0)
        slot.release()
        await holder.take_request("bob", 60, 10)
        other = shared_state(self, self.server)
        self.assertIsNotNone(await other.acquire_slot("alice", 1, 0))

    async def test_released_then_stopped(self) -> None:
        """A place released just before the gateway stops (within the give-back's linger)
        is given back by the stop, not left held until the slot expiry."""
        holder = shared_state(self, self.server)
        slot = await holder.acquire_slot("alice", 1, 0)
        protocol = holder.connection._protocol
        assert protocol is not None
        slot.release()
        holder.stop()
        await protocol.lost  # Redis read all the node sent before it closed
        other = shared_state(self, self.server)
        self.assertIsNotNone(await other.acquire_slot("alice", 1, 0))
