"""Two nodes sharing one real Redis that stalls: what a call that missed its deadline did
once Redis ran it is given back, and only that, whatever order Redis runs the calls of the
two nodes and of a node's connections in; and what the connection tells of such a call."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.limits_backend import LimitsSettings
from runnergw.limits import redis_state
from runnergw.limits.interfaces import TokenLease
from runnergw.limits.redis_connection import RedisConnection, RedisNotSent, RedisUnavailable
from runnergw.limits.redis_degraded import DegradableLimitState
from tests.helpers.redis_limits import HoldingRelay, RedisNodesTestCase

__all__ = ["ConnectionEndTests", "LateLeaseTests", "LateRefreshTests", "LateSlotTests",
           "OpenCountTests", "StopTests"]

_DAY = "2026-12-05"


class LateSlotTests(RedisNodesTestCase):
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
        await relay.given_up()
        await self.watch.wait("limiter_undone", what="a concurrency slot")
        self.assertEqual(await relay.release(), b":0\r\n")
        self.assertEqual(await self.slots(two, "alice"), [])
        self.assertIsNotNone(await two.acquire_slot("alice", 1, 0))


class LateRefreshTests(RedisNodesTestCase):
    """A refresh of a node's slots reaching Redis after one of them was released does not
    count it again."""

    async def test_refresh_after_release_counts_nothing(self) -> None:
        """A refresh held on the way to Redis past its connection's end, the slot released
        meanwhile on a new connection: the place stays free for another node."""
        relay = HoldingRelay(self, self.server)
        one, two = self.node(timeout=0.2, relay=relay), self.node()
        slot = await one.acquire_slot("alice", 1, 0)
        relay.hold()
        one.held.refresh()
        await relay.given_up()
        slot.release()
        one.give_backs.send()
        await one.connection.call("PING")  # the release ran: sent before it, on one new
        self.assertEqual(await self.slots(two, "alice"), [])
        self.assertEqual(await relay.release(), b":0\r\n")  # counted again: none
        self.assertEqual(await self.slots(two, "alice"), [])
        self.assertIsNotNone(await two.acquire_slot("alice", 1, 0))


class LateLeaseTests(RedisNodesTestCase):
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


    async def test_undo_run_twice_gives_back_once(self) -> None:
        """A lease whose answer is lost, then its undo's answer lost too: the undo is sent
        again on a third connection and runs twice in Redis; the tokens are given back
        once, node B's stay counted."""
        relay = HoldingRelay(self, self.server)
        one, two = self.node(timeout=0.2, relay=relay), self.node()
        await two.add_tokens("alice", _DAY, 30)
        await one.take_request("warm", 60, 10)
        relay.lose_answers(later_too=True)
        await self.assertFailure(one.lease_tokens("alice", _DAY, 1000, 1000), RedisUnavailable)
        await relay.given_up(2)  # the lease's connection, then the first undo's
        relay.answer_again()
        undone = await self.watch.wait("limiter_undone", what="a lease of tokens")
        self.assertEqual(undone["reply"], 0)  # given back by the first run already
        self.assertEqual(await self.total(two, "alice"), 30)

    async def test_answer_lost_with_a_slow_deadline(self) -> None:
        """A lease run by Redis whose answer is lost, the connection given up only after
        the time Redis keeps a lease (a long ``redisTimeout``): the undo still finds it,
        and the tokens are given back."""
        self.patch(redis_state, "UNDO_KEPT_MS", 1000)  # shorter than the 2 s waited
        relay = HoldingRelay(self, self.server)
        one, two = self.node(timeout=0.2, relay=relay), self.node()
        await two.add_tokens("alice", _DAY, 30)
        await one.take_request("warm", 60, 10)
        relay.lose_answers()
        await self.assertFailure(one.lease_tokens("alice", _DAY, 1000, 1000), RedisUnavailable)
        undone = await self.watch.wait("limiter_undone", what="a lease of tokens")
        self.assertEqual(undone["reply"], 970)
        self.assertEqual(await self.total(two, "alice"), 30)


class _Degradable(RedisNodesTestCase):
    """Node A fails open (its share of each limit while Redis is away)."""

    def degradable(self, timeout: float = 0.25) -> DegradableLimitState:
        open_all = (("rateLimit", "open"), ("concurrency", "open"), ("quota", "open"))
        settings = LimitsSettings(backend="redis", on_redis_error=open_all, nodes=2,
                                  redis_timeout=timeout)
        state = DegradableLimitState(self.node(timeout=timeout), settings, reactor,
                                     self.server.address)
        self.addCleanup(state.stop)
        return state

    async def settled_total(self, state: DegradableLimitState, subject: str) -> int:
        """The subject's total in Redis, once what the node sent before has run."""
        await state.shared.add_tokens(subject, _DAY, 0)
        return await self.total(state.shared, subject)


class OpenCountTests(_Degradable):
    """Failing open: each token is counted once, in Redis or on the node."""

    async def test_late_lease_replaced_by_local_one(self) -> None:
        """A lease refused at its deadline is granted on the node instead; the Redis lease,
        run late, is given back; at the end the unused local part goes back to the node:
        Redis counts node B's 30 alone, the node the 100 used."""
        one, two = self.degradable(), self.node()
        await two.add_tokens("alice", _DAY, 30)
        await one.take_request("warm", 60, 10)
        self.server.pause()
        lease = TokenLease()
        self.assertEqual(await one.lease_tokens("alice", _DAY, 1000, 400, 1, lease),
                         (400, 100))
        self.assertEqual(lease.runs, [(one.local, 400)])
        self.server.resume()
        await self.watch.wait("limiter_undone", what="a lease of tokens")
        await self.watch.wait("limiter_recovered")
        one.settle_lease("alice", _DAY, lease, 100)
        self.assertEqual(await self.settled_total(one, "alice"), 30)
        self.assertEqual(one.local.tokens_used("alice", _DAY), 100)

    async def test_owed_given_back_after_recovery(self) -> None:
        """A lease of 500 taken in Redis, ended having used 100 while Redis stalls: the 400
        owed go back once Redis answers again; node B's tokens counted meanwhile stay."""
        one, two = self.degradable(), self.node()
        lease = TokenLease()
        self.assertEqual(await one.lease_tokens("alice", _DAY, 1000, 500, 1, lease),
                         (500, 500))
        self.server.pause()
        await one.take_request("carol", 60, 10)  # finds Redis away
        one.settle_lease("alice", _DAY, lease, 100)
        counted = two.add_tokens("alice", _DAY, 20)
        self.server.resume()
        await counted
        await self.watch.wait("limiter_recovered")
        self.assertEqual(await self.settled_total(one, "alice"), 120)
        self.assertEqual(one.local.tokens_used("alice", _DAY), 0)

    async def test_count_sent_on_new_connection_not_counted_twice(self) -> None:
        """Tokens used, counted on a connection made for that count, whose answer misses
        its deadline: Redis runs the count when it goes on, and the node does not count
        them too."""
        one = self.degradable()
        self.server.pause()
        one.add_tokens("alice", _DAY, 40)  # connects, then sends it
        await self.watch.wait("limiter_degraded")
        self.server.resume()
        await self.watch.wait("limiter_recovered")
        self.assertEqual(await self.settled_total(one, "alice"), 40)
        self.assertEqual(one.local.tokens_used("alice", _DAY), 0)

    async def test_count_never_sent_counted_on_node(self) -> None:
        """Tokens used while Redis cannot be reached at all (the count never sent) are
        counted on the node."""
        one = self.degradable()
        await self.server.kill()
        await one.add_tokens("alice", _DAY, 40)
        self.assertEqual(one.local.tokens_used("alice", _DAY), 40)


class _Endpoint:
    """Connects when the test says; records whether a connection attempt was cancelled."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Deferred[Any], Any]] = []
        self.cancelled = 0

    def connect(self, factory: Any) -> Deferred[Any]:
        def cancel(_: Deferred[Any]) -> None:
            self.cancelled += 1

        attempt: Deferred[Any] = Deferred(cancel)
        self.attempts.append((attempt, factory))
        return attempt

    def open(self) -> StringTransport:
        """The last attempt succeeds: what the client writes is in the transport."""
        attempt, factory = self.attempts[-1]
        proto = factory.buildProtocol(None)
        transport = StringTransport()
        proto.makeConnection(transport)
        attempt.callback(proto)
        return transport


class ConnectionEndTests(SynchronousTestCase):
    """What a node knows of a call that failed: whether Redis may have run it; and a
    connection closed leaves nothing behind."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.endpoint = _Endpoint()
        self.connection = RedisConnection(self.endpoint, self.clock, 0.25)  # type: ignore
        self.addCleanup(self.connection.close)

    def test_never_sent_told_apart(self) -> None:
        """A call that waited for the connection past its deadline failed unsent (Redis
        cannot run it); one sent and unanswered may still run."""
        unsent = self.connection.call("INCR", "x")
        self.clock.advance(0.3)
        self.failureResultOf(unsent, RedisNotSent)
        self.clock.advance(1)
        queued = self.connection.call("INCR", "x")
        transport = self.endpoint.open()
        self.assertIn(b"INCR", transport.value())
        self.clock.advance(0.3)
        failure = self.failureResultOf(queued, RedisUnavailable)
        self.assertFalse(failure.check(RedisNotSent))

    def test_late_told_once_when_lost(self) -> None:
        """Calls past their deadline and calls not yet, then the connection lost: each
        call's late outcome is told once, as lost."""
        told: list[Any] = []
        first = self.connection.call("INCR", "x", late=told.append)
        self.endpoint.open()
        self.clock.advance(0.3)
        second = self.connection.call("INCR", "y", late=told.append)
        self.failureResultOf(first, RedisUnavailable)
        self.connection._protocol.connectionLost(Failure(ConnectionError()))  # type: ignore
        self.failureResultOf(second, RedisUnavailable)
        self.assertEqual([type(outcome.value) for outcome in told], [RedisUnavailable] * 2)

    def test_closed_while_connecting(self) -> None:
        """Closed while a connection is being made: the attempt is given up, no timer is
        left, no connection made afterwards."""
        self.connection.call("PING").addErrback(lambda _: None)
        self.connection.close()
        self.assertEqual(self.endpoint.cancelled, 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_closed_by_a_failed_call(self) -> None:
        """A caller that closes the connection when its call fails at the deadline (the
        gateway stopping) does not break the check of the other calls."""
        self.connection.call("PING").addErrback(lambda _: self.connection.close())
        self.connection.call("PING").addErrback(lambda _: None)
        self.clock.advance(0.3)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_call_made_by_a_failed_call(self) -> None:
        """A caller that makes another call when its call fails at the deadline (a request
        refused gives its slot back): that call too fails at its own deadline."""
        first = self.connection.call("INCR", "x")
        self.endpoint.open()
        then: list[Deferred[Any]] = []
        first.addErrback(lambda _: then.append(self.connection.call("INCR", "y")))
        self.clock.advance(0.3)
        self.clock.advance(0.3)
        self.failureResultOf(then[0], RedisUnavailable)


class StopTests(RedisNodesTestCase):
    """Undo steps that never reached Redis when the gateway stops are named in the log."""

    async def test_waiting_undo_steps_logged_at_stop(self) -> None:
        """A slot released while Redis is down, the gateway stopping before Redis returns:
        the step that could not be sent is logged (the place is free after the expiry)."""
        state = self.node()
        slot = await state.acquire_slot("alice", 1, 0)
        await self.server.kill()
        await self.assertFailure(state.take_request("alice", 60, 5), RedisUnavailable)
        slot.release()
        state.stop()
        [lost] = self.watch.named("limiter_undo_lost")
        self.assertEqual(lost["steps"], 1)
