"""A request's bucket, slot and first lease made in one call to a real Redis (``ADMIT``):
up to the first refused, on the keys the single calls use; a slot waited for, then the rest;
what a call took after its caller gave up given back; and, while Redis is away, each check
as its limit's choice says."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import CancelledError, Deferred, maybeDeferred

from runnergw.chain.exchange import Reject
from runnergw.config.limits_backend import LimitsSettings
from runnergw.limits.checks import BucketCheck, LeaseCheck, SlotCheck
from runnergw.limits.interfaces import ISlot, TokenLease
from runnergw.limits.redis_connection import RedisUnavailable
from runnergw.limits.redis_degraded import DegradableLimitState
from runnergw.limits.redis_scripts import ADMIT
from runnergw.limits.redis_state import DAY_KEPT, RedisLimitState
from tests.helpers.redis_limits import HoldingRelay, RedisNodesTestCase

__all__ = ["AdmitCancelTests", "AdmitDegradedTests", "AdmitLateTests", "AdmitScriptTests",
           "AdmitSharedKeysTests", "AdmitStateTests", "AdmitWaitTests"]

_DAY = "2026-12-05"


def _checks(burst: int = 3, wait: float = 0,
            want: int = 30) -> tuple[BucketCheck, SlotCheck, LeaseCheck]:
    """A request's bucket (``burst`` at once, 6 a minute), its one place and its lease of
    ``want`` tokens of 1000 a day."""
    return (BucketCheck("alice", 6, burst), SlotCheck("alice", 1, wait),
            LeaseCheck("alice", _DAY, 1000, want, 1, TokenLease()))


def _waiting_for_a_slot(state: RedisLimitState) -> Deferred[Any]:
    """Fires once ``state`` waits for a place on its own (after its ``ADMIT``), its first
    attempt answered."""
    started: Deferred[Any] = Deferred()
    started.addCallback(lambda _: state.connection.call("PING"))
    acquire = state.acquire_slot

    def acquire_slot(key: str, limit: int, wait: float) -> Any:
        waited = acquire(key, limit, wait)
        if not started.called:
            started.callback(None)
        return waited

    state.acquire_slot = acquire_slot  # type: ignore[method-assign]
    return started


class _WithRedis(RedisNodesTestCase):
    async def undone(self) -> None:
        """Both a slot and a lease were undone."""
        await self.watch.wait("limiter_undone", what="a concurrency slot")
        await self.watch.wait("limiter_undone", what="a lease of tokens")


class AdmitScriptTests(_WithRedis):
    """The ``ADMIT`` script's replies, each as its own script gives it."""

    async def run_admit(self, state: RedisLimitState, name: str, burst: int = 1) -> Any:
        """Alice's bucket, a slot and a lease named ``name``, in one ``ADMIT``."""
        keys = [state.key("rate", "alice"), state.key("slots", "alice"),
                f"{state.prefix}gone:{name}", state.day_key(_DAY), f"{state.prefix}lease:{name}"]
        args: list[str | int] = ["rate", 6, burst, "slot", 1, name, "30.0",
                                 "lease", "alice", 1000, 30, 1, DAY_KEPT, 60000]
        return await ADMIT.run(state.connection, keys, args)

    async def test_every_reply(self) -> None:
        """Nothing refused: the bucket's decision, the slot taken, the tokens granted and
        what is left."""
        state = self.node()
        allowed, taken, leased = await self.run_admit(state, "one", burst=3)
        self.assertEqual((allowed[0], float(allowed[1]), taken, leased), (1, 2.0, 1, [30, 970]))

    async def test_ends_at_the_refused_bucket(self) -> None:
        """A bucket that refuses is the last reply: the call takes no slot and no tokens."""
        state = self.node()
        await state.take_request("alice", 6, 1)
        replies = await self.run_admit(state, "one")
        self.assertEqual((len(replies), replies[0][0]), (1, 0))
        self.assertEqual((await self.slots(state), await self.total(state)), ([], 0))

    async def test_ends_at_the_refused_slot(self) -> None:
        """A slot not free is the last reply: the call leases no tokens."""
        state = self.node()
        await state.acquire_slot("alice", 1, 0)
        replies = await self.run_admit(state, "one", burst=3)
        self.assertEqual((len(replies), replies[1]), (2, 0))
        self.assertEqual(await self.total(state), 0)


class AdmitSharedKeysTests(_WithRedis):
    """The checks made together count in the bucket, slots and totals the single calls of
    every node use."""

    async def test_bucket_shared(self) -> None:
        """A request admitted on one node takes from the bucket another node's single call
        sees."""
        one, two = self.node(), self.node()
        bucket, _, _ = _checks(burst=2)
        await one.admit([bucket])
        self.assertEqual((await two.take_request("alice", 6, 2)).remaining, 0)

    async def test_slot_shared(self) -> None:
        """A place taken by an admission on one node is taken for another node's single
        call."""
        one, two = self.node(), self.node()
        _, slot, _ = _checks()
        await one.admit([slot])
        self.assertIsNone(await two.acquire_slot("alice", 1, 0))

    async def test_lease_shared(self) -> None:
        """Tokens leased by an admission on one node count in the total another node's
        lease sees."""
        one, two = self.node(), self.node()
        _, _, lease = _checks(want=300)
        await one.admit([lease])
        self.assertEqual(await two.lease_tokens("alice", _DAY, 1000, 1000), (700, 0))


class AdmitStateTests(_WithRedis):
    """``RedisLimitState.admit`` fills each check with its answer."""

    async def test_checks_filled(self) -> None:
        """The bucket's decision, the place, and the tokens granted are the request's."""
        bucket, slot, lease = checks = _checks()
        await self.node().admit(checks)
        self.assertEqual((bucket.decision.allowed, bucket.decision.remaining),  # type: ignore
                         (True, 2))
        self.assertTrue(ISlot.providedBy(slot.slot))
        self.assertEqual((lease.granted, lease.left), (30, 970))

    async def test_lease_recorded(self) -> None:
        """The tokens granted are in the request's lease, as Redis' (given back there at the
        request's end)."""
        state = self.node()
        _, _, lease = checks = _checks()
        await state.admit(checks)
        self.assertEqual(lease.lease.runs, [(state, 30)])

    async def test_bucket_refused_ends(self) -> None:
        """A rate-limited request is answered by its bucket alone: no place, no lease."""
        state = self.node()
        await state.take_request("alice", 6, 1)
        bucket, slot, lease = checks = _checks(burst=1)
        await state.admit(checks)
        self.assertEqual([check.answered for check in checks], [True, False, False])
        self.assertEqual((await self.slots(state), await self.total(state)), ([], 0))

    async def test_slot_refreshed(self) -> None:
        """A place taken by an admission is held past the slot expiry while its node
        lives."""
        _, slot, _ = _checks()
        await self.node(slot_expiry=1.0).admit([slot])
        other = self.node(slot_expiry=1.0)
        self.assertIsNone(await other.acquire_slot("alice", 1, 2.5))

    async def test_slot_released(self) -> None:
        """A place taken by an admission and given back is free for another node."""
        _, slot, _ = _checks()
        await self.node().admit([slot])
        slot.slot.release()  # type: ignore[union-attr]
        self.assertIsNotNone(await self.node().acquire_slot("alice", 1, 1.0))


class AdmitWaitTests(_WithRedis):
    """A place not free that the request may wait for: asked for alone, then the rest."""

    async def test_freed_elsewhere_then_leased(self) -> None:
        """A place freed by another node during the wait is taken, then the tokens are
        leased."""
        one, two = self.node(), self.node()
        held = await two.acquire_slot("alice", 1, 0)
        _, slot, lease = checks = _checks(wait=5.0)
        admitted = one.admit(checks)
        await _waiting_for_a_slot(one)
        self.assertFalse(lease.answered)
        held.release()
        await admitted
        self.assertTrue(ISlot.providedBy(slot.slot))
        self.assertEqual((lease.granted, await self.total(two)), (30, 30))

    async def test_place_last_no_further_call(self) -> None:
        """A request whose last check is a place it waited for is admitted once it has the
        place, with no further call to Redis (one more round trip, which could fail)."""
        one, two = self.node(), self.node()
        held = await two.acquire_slot("alice", 1, 0)
        _, slot, _ = _checks(wait=5.0)
        admitted = one.admit([slot])
        await _waiting_for_a_slot(one)
        scripts: list[Any] = []
        call = one.connection.call

        def noted(*args: Any, **options: Any) -> Deferred[Any]:
            scripts.append(args[1])  # a script's SHA1 (EVALSHA) or source (EVAL)
            return call(*args, **options)

        one.connection.call = noted  # type: ignore[method-assign]
        held.release()
        await admitted
        self.assertTrue(ISlot.providedBy(slot.slot))
        self.assertEqual([script for script in scripts if script in (ADMIT.sha, ADMIT.source)],
                         [])

    async def test_wait_in_vain(self) -> None:
        """No place within the wait: the slot is refused and no tokens are leased."""
        one, two = self.node(), self.node()
        await two.acquire_slot("alice", 1, 0)
        _, slot, lease = checks = _checks(wait=0.2)
        await one.admit(checks)
        self.assertEqual((slot.refused, lease.answered), (True, False))
        self.assertEqual(await self.total(two), 0)


class AdmitCancelTests(_WithRedis):
    """A request given up (its client left) takes nothing, whenever it is given up."""

    async def test_during_the_call(self) -> None:
        """Given up before Redis answered: the place and tokens Redis gave it are given back
        once it answers."""
        state = self.node()
        await state.add_tokens("alice", _DAY, 30)
        checks = _checks()
        admitted = state.admit(checks)
        admitted.cancel()
        await self.assertFailure(admitted, CancelledError)
        await self.undone()
        self.assertEqual((await self.slots(state), await self.total(state)), ([], 30))

    async def test_checks_left_unanswered(self) -> None:
        """Given up before Redis answered: the request is not given the place (its end
        releases nothing twice)."""
        state = self.node()
        _, slot, lease = checks = _checks()
        admitted = state.admit(checks)
        admitted.cancel()
        await self.assertFailure(admitted, CancelledError)
        await self.undone()
        self.assertEqual((slot.answered, lease.answered), (False, False))

    async def test_during_the_wait(self) -> None:
        """Given up while waiting for a place: the place freed afterwards is not taken for
        it, and no tokens are leased."""
        one, two = self.node(), self.node()
        held = await two.acquire_slot("alice", 1, 0)
        checks = _checks(wait=5.0)
        admitted = one.admit(checks)
        await _waiting_for_a_slot(one)
        admitted.cancel()
        await self.assertFailure(admitted, CancelledError)
        held.release()
        await one.connection.call("PING")  # an attempt sent before the cancel is answered
        self.assertEqual((await self.slots(two), await self.total(two)), ([], 0))


    async def cancel_during_the_rest(self) -> tuple[RedisLimitState, SlotCheck, LeaseCheck]:
        """A request given up while the lease after the place it waited for is asked
        (Redis stalled once it was sent), then Redis going on: the node, the request's slot
        and lease checks."""
        one, two = self.node(), self.node()
        held = await two.acquire_slot("alice", 1, 0)
        _, slot, lease = checks = _checks(wait=5.0)
        admitted = one.admit(checks)
        await _waiting_for_a_slot(one)
        asked: Deferred[None] = Deferred()
        admit = one.admit

        def admit_the_rest(rest: Any) -> Deferred[None]:
            made = admit(rest)
            self.server.pause()  # the lease is sent, not answered
            reactor.callLater(0, asked.callback, None)
            return made

        one.admit = admit_the_rest  # type: ignore[method-assign]
        held.release()
        await asked
        admitted.cancel()
        await self.assertFailure(admitted, CancelledError)
        self.server.resume()
        return one, slot, lease

    async def test_during_the_lease_after_a_wait(self) -> None:
        """Given up while the lease after a waited place is asked: the tokens Redis grants
        it are given back once it answers."""
        one, _, lease = await self.cancel_during_the_rest()
        await self.watch.wait("limiter_undone", what="a lease of tokens")
        self.assertEqual((lease.answered, await self.total(one)), (False, 0))

    async def test_place_kept_for_the_end(self) -> None:
        """Given up while the lease after a waited place is asked: the place is the
        request's, and its end frees it for the cluster."""
        one, slot, _ = await self.cancel_during_the_rest()
        slot.slot.release()  # type: ignore[union-attr]
        await one.connection.call("PING")
        self.assertEqual(await self.slots(one), [])


class AdmitLateTests(_WithRedis):
    """An ``ADMIT`` that missed its deadline: what Redis did for it is undone."""

    async def test_run_after_a_stall(self) -> None:
        """Refused at its deadline while Redis stalls, run once Redis goes on: its place and
        tokens are given back; the day's total is what other nodes counted."""
        one, two = self.node(timeout=0.2), self.node()
        await two.add_tokens("alice", _DAY, 30)
        await one.take_request("warm", 60, 10)  # connected
        self.server.pause()
        await self.assertFailure(one.admit(_checks()), RedisUnavailable)
        self.server.resume()
        await self.undone()
        self.assertEqual((await self.slots(two), await self.total(two)), ([], 30))

    async def test_reaching_redis_after_its_undo(self) -> None:
        """Held on the way to Redis past its connection's end, it reaches Redis after its
        undo ran on a new connection: it takes no place and no tokens."""
        relay = HoldingRelay(self, self.server)
        one, two = self.node(timeout=0.2, relay=relay), self.node()
        await two.add_tokens("alice", _DAY, 30)
        await one.take_request("warm", 60, 10)
        relay.hold()
        await self.assertFailure(one.admit(_checks()), RedisUnavailable)
        await relay.given_up()
        await self.undone()
        await relay.release()
        self.assertEqual((await self.slots(two), await self.total(two)), ([], 30))
        self.assertIsNotNone(await two.acquire_slot("alice", 1, 0))


class AdmitDegradedTests(_WithRedis):
    """Redis away: each check as its limit's choice says (``closed``: 503; ``open``: this
    node's share of the limit)."""

    def degradable(self, choice: str, timeout: float = 0.25) -> DegradableLimitState:
        choices = tuple((name, choice) for name in ("rateLimit", "concurrency", "quota"))
        settings = LimitsSettings(backend="redis", on_redis_error=choices, nodes=2,
                                  redis_timeout=timeout)
        state = DegradableLimitState(self.node(timeout=timeout), settings, reactor,
                                     self.server.address)
        self.addCleanup(state.stop)
        return state

    async def test_closed_refused(self) -> None:
        """Failing closed, a request whose checks cannot reach Redis gets 503 with
        ``Retry-After``."""
        state = self.degradable("closed")
        await self.server.kill()
        refusal = await self.assertFailure(state.admit(_checks()), Reject)
        self.assertEqual((refusal.status, dict(refusal.headers)["Retry-After"]), (503, "2"))

    async def test_closed_refused_at_once_while_away(self) -> None:
        """Once Redis is known away, a request failing closed is refused without a call."""
        state = self.degradable("closed")
        await self.server.kill()
        await self.assertFailure(state.admit(_checks()), Reject)
        with self.assertRaises(Reject):
            state.admit(_checks())

    async def test_open_bucket_share(self) -> None:
        """Failing open, the bucket is this node's share: half the burst with two nodes."""
        state = self.degradable("open")
        await self.server.kill()
        decisions = []
        for _ in range(3):
            bucket = BucketCheck("alice", 6, 4)
            await maybeDeferred(state.admit, [bucket])
            decisions.append(bucket.decision)
        self.assertEqual([d.allowed for d in decisions], [True, True, False])  # type: ignore
        self.assertEqual(decisions[0].limit, 2)  # type: ignore[union-attr]

    async def test_open_lease_share(self) -> None:
        """Failing open, a lease takes from this node's share of the quota, counted here."""
        state = self.degradable("open")
        await self.server.kill()
        _, _, lease = _checks(want=800)
        await state.admit([lease])
        self.assertEqual((lease.granted, lease.lease.runs), (500, [(state.local, 500)]))

    async def test_late_call_counted_once(self) -> None:
        """Failing open, an ``ADMIT`` past its deadline is replaced by this node's checks;
        what Redis did for it once it goes on is given back: its tokens are counted on the
        node alone."""
        state = self.degradable("open")
        await state.take_request("warm", 60, 10)  # connected
        self.server.pause()
        _, _, lease = checks = _checks()
        await state.admit(checks)
        self.server.resume()
        await self.undone()
        self.assertEqual((lease.lease.runs, await self.total(state.shared)),
                         ([(state.local, 30)], 0))

    async def test_fails_mid_run(self) -> None:
        """Redis lost while the request waits for a place: the place and the lease are
        taken on this node, the bucket Redis answered is not counted again."""
        state, other = self.degradable("open"), self.node()
        await other.acquire_slot("alice", 1, 0)
        bucket, slot, lease = checks = _checks(burst=4, wait=5.0)
        admitted = state.admit(checks)
        await _waiting_for_a_slot(state.shared)
        await self.server.kill()
        await admitted
        self.assertEqual(bucket.decision.limit, 4)  # type: ignore[union-attr]
        self.assertIsNotNone(slot.slot)
        self.assertEqual(lease.lease.runs, [(state.local, 30)])
        self.assertEqual(state.local.take_request("alice", 3, 2).remaining, 1)  # its share
