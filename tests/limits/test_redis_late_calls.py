"""Two nodes sharing one real Redis that stalls: what a call that missed its deadline did
once Redis ran it is given back, and only that, whatever order Redis runs the calls of the
two nodes and of a node's connections in."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from runnergw.config.reader import parse_listen_address
from runnergw.limits.redis_connection import RedisUnavailable
from runnergw.limits.redis_state import RedisLimitState
from tests.helpers.killable_ollama import LogWatch
from tests.helpers.redis_limits import HoldingRelay, shared_state
from tests.helpers.redis_server import RedisServer

__all__ = ["LateLeaseTests", "LateRefreshTests", "LateSlotTests"]

_DAY = "2026-12-05"


class _TwoNodes(TestCase):
    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.watch = LogWatch()
        self.addCleanup(self.watch.close)
        self.server = RedisServer(self)
        return self.server.start()

    def node(self, timeout: float = 2.0, relay: HoldingRelay | None = None) -> RedisLimitState:
        """A node's state (``relay``: reaching Redis through it)."""
        if relay is None:
            return shared_state(self, self.server, timeout=timeout)
        return shared_state(self, self.server, timeout=timeout,
                            address=parse_listen_address(relay.address))

    async def slots(self, state: RedisLimitState, subject: str) -> list[str]:
        """The slot ids the cluster counts for the subject."""
        held = await state.connection.call("ZRANGE", state.key("slots", subject), 0, -1)
        return sorted(slot_id.decode() for slot_id in held)

    async def total(self, state: RedisLimitState, subject: str) -> int:
        """The subject's total of the day in Redis."""
        return int(await state.connection.call("HGET", state.day_key(_DAY), subject) or 0)


class LateSlotTests(_TwoNodes):
    """A slot take that missed its deadline leaves no place held, and frees no other."""

    async def test_only_slots_really_held_remain(self) -> None:
        """Node A's take is refused at its deadline while node B releases a place and takes
        another; once Redis goes on, the cluster counts B's new place alone: A's late take
        is given back, B's place is not."""
        one, two = self.node(timeout=0.2), self.node()
        await one.take_request("warm", 60, 10)  # connected
        kept = await two.acquire_slot("alice", 2, 0)
        self.server.pause()
        await self.assertFailure(one.acquire_slot("alice", 2, 0), RedisUnavailable)
        kept.release()
        taken = two.acquire_slot("alice", 2, 0)
        self.server.resume()
        slot = await taken
        await self.watch.wait("limiter_undone", what="a concurrency slot")
        self.assertEqual(await self.slots(two, "alice"), [slot.slot_id])

    async def test_take_after_its_undo_takes_nothing(self) -> None:
        """A take held on the way to Redis past its connection's end reaches Redis after
        its undo ran on a new connection: it takes nothing, the last place stays free."""
        relay = HoldingRelay(self, self.server)
        one, two = self.node(timeout=0.2, relay=relay), self.node()
        await one.take_request("warm", 60, 10)
        relay.hold()
        await self.assertFailure(one.acquire_slot("alice", 1, 0), RedisUnavailable)
        await relay.given_up
        await self.watch.wait("limiter_undone", what="a concurrency slot")
        self.assertEqual(await relay.release(), b":0\r\n")
        self.assertEqual(await self.slots(two, "alice"), [])
        self.assertIsNotNone(await two.acquire_slot("alice", 1, 0))


class LateRefreshTests(_TwoNodes):
    """A refresh of a node's slots reaching Redis after one of them was released does not
    count it again."""

    async def test_refresh_after_release_counts_nothing(self) -> None:
        """A refresh held on the way to Redis past its connection's end, the slot released
        meanwhile on a new connection: the place stays free for another node."""
        relay = HoldingRelay(self, self.server)
        one, two = self.node(timeout=0.2, relay=relay), self.node()
        slot = await one.acquire_slot("alice", 1, 0)
        relay.hold()
        one._refresh()
        await relay.given_up
        slot.release()
        await one.connection.call("PING")  # the release ran: sent before it, on one new
        self.assertEqual(await self.slots(two, "alice"), [])
        self.assertEqual(await relay.release(), b":0\r\n")  # counted again: none
        self.assertEqual(await self.slots(two, "alice"), [])
        self.assertIsNotNone(await two.acquire_slot("alice", 1, 0))


class LateLeaseTests(_TwoNodes):
    """A lease that missed its deadline gives back what Redis granted it, once; other
    nodes' tokens stay counted."""

    async def test_given_back_once_others_kept(self) -> None:
        """Node A's lease of the whole quota is refused at its deadline while node B counts
        20 more tokens; once Redis goes on and the lease is undone, the day's total is B's
        50, and the rest of the quota can be leased."""
        one, two = self.node(timeout=0.2), self.node()
        await two.lease_tokens("alice", _DAY, 1000, 30)
        self.server.pause()
        await self.assertFailure(one.lease_tokens("alice", _DAY, 1000, 1000), RedisUnavailable)
        counted = two.add_tokens("alice", _DAY, 20)
        self.server.resume()
        await counted
        await self.watch.wait("limiter_undone", what="a lease of tokens")
        self.assertEqual(await self.total(two, "alice"), 50)
        self.assertEqual(len(self.watch.named("limiter_undone")), 1)
        self.assertEqual(await two.lease_tokens("alice", _DAY, 1000, 1000), (950, 0))

    async def test_lease_after_its_undo_grants_nothing(self) -> None:
        """A lease held on the way to Redis past its connection's end reaches Redis after
        its undo ran on a new connection: it grants nothing."""
        relay = HoldingRelay(self, self.server)
        one, two = self.node(timeout=0.2, relay=relay), self.node()
        await two.add_tokens("alice", _DAY, 30)
        await one.take_request("warm", 60, 10)
        relay.hold()
        await self.assertFailure(one.lease_tokens("alice", _DAY, 1000, 1000), RedisUnavailable)
        undone = await self.watch.wait("limiter_undone", what="a lease of tokens")
        self.assertEqual(undone["reply"], 0)  # the lease had not run
        self.assertEqual(await relay.release(), b"*2\r\n:0\r\n:970\r\n")
        self.assertEqual(await self.total(two, "alice"), 30)
