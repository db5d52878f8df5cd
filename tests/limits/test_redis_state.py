"""Limit state in a real Redis: buckets, slots, daily totals, as several nodes share them."""

from __future__ import annotations

import time

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase

from runnergw.limits.interfaces import ILimitState, ISlot
from runnergw.limits.redis_connection import RedisUnavailable
from runnergw.limits.redis_state import DAY_KEPT
from tests.helpers.killable_ollama import LogWatch
from tests.helpers.redis_limits import shared_state
from tests.helpers.redis_server import RedisServer

__all__ = ["RedisBucketTests", "RedisSlotTests", "RedisStallTests", "RedisTokenTotalTests"]


class _WithRedis(TestCase):
    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        return self.server.start()


class RedisBucketTests(_WithRedis):
    """A token bucket per subject, counted in Redis with Redis' clock."""

    def test_provides_the_interface(self) -> None:
        """The filters see it as any limit state."""
        self.assertTrue(ILimitState.providedBy(shared_state(self, self.server)))

    async def test_burst_then_refused(self) -> None:
        """``burst`` requests pass at once; the next is refused with the wait until one
        more is allowed."""
        state = shared_state(self, self.server)
        decisions = [await state.take_request("alice", 6, 3) for _ in range(4)]
        self.assertEqual([d.allowed for d in decisions], [True, True, True, False])
        self.assertEqual([d.remaining for d in decisions], [2, 1, 0, 0])
        self.assertTrue(9.5 <= decisions[3].retry_after <= 10.0)  # one per 10 s
        self.assertTrue(29.5 <= decisions[3].reset_after <= 30.0)

    async def test_two_nodes_share_a_bucket(self) -> None:
        """Requests on two nodes take from one bucket: the burst holds across both."""
        one, two = shared_state(self, self.server), shared_state(self, self.server)
        allowed = [(await state.take_request("alice", 60, 4)).allowed
                   for state in (one, two, one, two, one, two)]
        self.assertEqual(allowed, [True] * 4 + [False] * 2)

    async def test_subjects_apart(self) -> None:
        """One subject's bucket does not drain another's."""
        state = shared_state(self, self.server)
        await state.take_request("alice", 60, 1)
        self.assertFalse((await state.take_request("alice", 60, 1)).allowed)
        self.assertTrue((await state.take_request("bob", 60, 1)).allowed)

    async def test_prefixes_apart(self) -> None:
        """Two clusters on one Redis (two key prefixes) do not share buckets."""
        one = shared_state(self, self.server, prefix="east:")
        two = shared_state(self, self.server, prefix="west:")
        await one.take_request("alice", 60, 1)
        self.assertTrue((await two.take_request("alice", 60, 1)).allowed)

    async def test_subject_cannot_name_another_key(self) -> None:
        """Whatever a subject holds (the key separator, braces, a newline, 10 kB), its key is
        its hash under the prefix: no subject names another key or makes keys long, and
        each such subject has a bucket of its own."""
        state = shared_state(self, self.server)
        odd = ["rate:alice", "alice\r\n*1\r\n$8\r\nFLUSHALL", "{alice}", "é" * 10000]
        for subject in odd:
            self.assertRegex(state.key("rate", subject), r"^test:rate:[0-9a-f]{32}$")
        await state.take_request("alice", 60, 1)
        for subject in odd:
            self.assertTrue((await state.take_request(subject, 60, 1)).allowed)
        self.assertEqual(len({state.key("rate", subject) for subject in [*odd, "alice"]}), 5)

    async def test_unix_socket(self) -> None:
        """Redis is reached on a unix socket."""
        server = RedisServer(self, unix_socket=True)
        await server.start()
        state = shared_state(self, server)
        self.assertTrue((await state.take_request("alice", 60, 1)).allowed)


class RedisSlotTests(_WithRedis):
    """Concurrency slots: held while refreshed, free once released or expired."""

    async def test_limit_across_nodes(self) -> None:
        """Two nodes hold at most ``limit`` places of a subject together."""
        one, two = shared_state(self, self.server), shared_state(self, self.server)
        first = await one.acquire_slot("alice", 2, 0)
        second = await two.acquire_slot("alice", 2, 0)
        self.assertTrue(ISlot.providedBy(first) and ISlot.providedBy(second))
        self.assertIsNone(await one.acquire_slot("alice", 2, 0))
        self.assertIsNone(await two.acquire_slot("alice", 2, 0))

    async def test_released_place_taken_by_other_node(self) -> None:
        """A place given back on one node is taken by a request waiting on another."""
        one, two = shared_state(self, self.server), shared_state(self, self.server)
        held = await one.acquire_slot("alice", 1, 0)
        waiting = two.acquire_slot("alice", 1, 5)
        await deferLater(reactor, 0.05, lambda: None)
        self.assertFalse(waiting.called)
        held.release()
        self.assertIsNotNone(await waiting)

    async def test_wait_ends(self) -> None:
        """No place within ``wait``: None."""
        state = shared_state(self, self.server)
        await state.acquire_slot("alice", 1, 0)
        started = time.monotonic()
        self.assertIsNone(await state.acquire_slot("alice", 1, 0.2))
        self.assertGreaterEqual(time.monotonic() - started, 0.2)

    async def test_cancelled_wait_takes_nothing(self) -> None:
        """A client that leaves while waiting holds no place afterwards."""
        state = shared_state(self, self.server)
        held = await state.acquire_slot("alice", 1, 0)
        waiting = state.acquire_slot("alice", 1, 5)
        waiting.cancel()
        self.assertFailure(waiting, CancelledError)
        await waiting
        held.release()
        self.assertIsNotNone(await state.acquire_slot("alice", 1, 0))

class RedisTokenTotalTests(_WithRedis):
    """Daily token totals by subject, leases taken atomically."""

    async def test_leases_until_the_limit(self) -> None:
        """Leases are granted up to the limit, the last one partly, then none."""
        state = shared_state(self, self.server)
        self.assertEqual(await state.lease_tokens("alice", "2026-12-05", 100, 60), (60, 40))
        self.assertEqual(await state.lease_tokens("alice", "2026-12-05", 100, 60), (40, 0))
        self.assertEqual(await state.lease_tokens("alice", "2026-12-05", 100, 60), (0, 0))
        self.assertEqual(await state.tokens_used("alice", "2026-12-05"), 100)

    async def test_need_not_met(self) -> None:
        """Fewer tokens left than needed: nothing is granted."""
        state = shared_state(self, self.server)
        await state.lease_tokens("alice", "2026-12-05", 100, 90)
        self.assertEqual(await state.lease_tokens("alice", "2026-12-05", 100, 50, 20),
                         (0, 10))

    async def test_quota_spent_on_one_node_seen_on_another(self) -> None:
        """Tokens counted on one node limit the same subject on another."""
        one, two = shared_state(self, self.server), shared_state(self, self.server)
        await one.add_tokens("alice", "2026-12-05", 95)
        self.assertEqual(await two.lease_tokens("alice", "2026-12-05", 100, 10), (5, 0))

    async def test_total_after_own_lease_known_at_once(self) -> None:
        """After a lease that left some quota, the next check of that subject on the node
        needs no round trip; the lease after it still sees what other nodes counted."""
        one, two = shared_state(self, self.server), shared_state(self, self.server)
        await one.lease_tokens("alice", "2026-12-05", 100, 30)
        self.assertEqual(one.tokens_used("alice", "2026-12-05"), 30)
        await two.add_tokens("alice", "2026-12-05", 70)
        self.assertEqual(await one.lease_tokens("alice", "2026-12-05", 100, 10), (0, 0))
        self.assertEqual(await one.tokens_used("alice", "2026-12-05"), 100)

    async def test_given_back_never_below_zero(self) -> None:
        """An unused lease given back lowers the total, never below zero."""
        state = shared_state(self, self.server)
        await state.add_tokens("alice", "2026-12-05", 30)
        await state.add_tokens("alice", "2026-12-05", -10)
        self.assertEqual(await state.tokens_used("alice", "2026-12-05"), 20)
        await state.add_tokens("alice", "2026-12-05", -50)
        self.assertEqual(await state.tokens_used("alice", "2026-12-05"), 0)

    async def test_days_apart_and_expiring(self) -> None:
        """Each day has its own totals, kept a few days."""
        state = shared_state(self, self.server)
        await state.add_tokens("alice", "2026-12-04", 30)
        self.assertEqual(await state.tokens_used("alice", "2026-12-05"), 0)
        ttl = await state.connection.call("TTL", state.day_key("2026-12-04"))
        self.assertTrue(DAY_KEPT - 5 <= ttl <= DAY_KEPT)

    async def test_day_totals(self) -> None:
        """The cluster report reads every subject's total of a day."""
        state = shared_state(self, self.server)
        await state.add_tokens("alice", "2026-12-05", 30)
        await state.add_tokens("bob", "2026-12-05", 12)
        self.assertEqual(await state.day_totals("2026-12-05"), {"alice": 30, "bob": 12})


class RedisStallTests(_WithRedis):
    """A Redis that stalls (its process stopped, then going on): what a call that missed
    its deadline did once Redis ran it is given back, so a refused request takes nothing."""

    def setUp(self) -> Deferred[None]:
        self.watch = LogWatch()
        self.addCleanup(self.watch.close)
        return super().setUp()

    async def test_timed_out_lease_given_back(self) -> None:
        """A lease refused at its deadline, run by Redis once it goes on, is given back:
        the day's total is what was really used, not the whole quota."""
        state = shared_state(self, self.server, timeout=0.2)
        await state.add_tokens("alice", "2026-12-05", 4)
        self.server.pause()
        await self.assertFailure(state.lease_tokens("alice", "2026-12-05", 1000, 1000),
                                 RedisUnavailable)
        self.server.resume()
        undone = await self.watch.wait("limiter_undone")
        self.assertEqual(undone["reply"], 996)  # what Redis granted, given back
        other = shared_state(self, self.server)
        self.assertEqual(await other.tokens_used("alice", "2026-12-05"), 4)
        self.assertEqual(await other.lease_tokens("alice", "2026-12-05", 1000, 1000),
                         (996, 0))

    async def test_lease_on_given_up_connection_given_back(self) -> None:
        """A lease whose connection was given up (Redis stalled longer than
        ``stuck_after``) is given back once Redis answers on a new connection, whether
        Redis runs it before or after."""
        state = shared_state(self, self.server, timeout=0.2)
        await state.add_tokens("alice", "2026-12-05", 4)
        self.server.pause()
        await self.assertFailure(state.lease_tokens("alice", "2026-12-05", 1000, 1000),
                                 RedisUnavailable)
        await self.watch.wait("redis_connection_given_up")
        self.server.resume()
        await self.watch.wait("limiter_undone")
        other = shared_state(self, self.server)
        self.assertEqual(await other.tokens_used("alice", "2026-12-05"), 4)

    async def test_timed_out_slot_take_leaves_no_slot(self) -> None:
        """A slot take refused at its deadline, run by Redis once it goes on, leaves no
        place held: the subject is not blocked for the slot expiry."""
        state = shared_state(self, self.server, timeout=0.2)
        self.assertIsNotNone(await state.take_request("alice", 60, 10))  # connected
        self.server.pause()
        await self.assertFailure(state.acquire_slot("alice", 1, 0), RedisUnavailable)
        self.server.resume()
        await self.watch.wait("limiter_undone")
        self.assertEqual(await state.connection.call("ZCARD", state.key("slots", "alice")), 0)
        other = shared_state(self, self.server)
        self.assertIsNotNone(await other.acquire_slot("alice", 1, 0))
