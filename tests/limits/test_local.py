"""Limit state in this process: buckets, slots and daily token totals."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.limits.interfaces import ILimitState, ISlot, TokenLease
from runnergw.limits.local import _PRUNE_EVERY, LocalLimitState

__all__ = ["BucketPruningTests", "ConcurrencySlotTests", "RateBucketTests", "TokenTotalTests"]


class RateBucketTests(SynchronousTestCase):
    """A bucket of ``burst`` requests refilled at the per-minute rate."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.state = LocalLimitState(self.clock)

    def test_provides_the_interface(self) -> None:
        """The filters see it as any limit state."""
        self.assertTrue(ILimitState.providedBy(self.state))

    def test_burst_then_refused(self) -> None:
        """``burst`` requests pass at once; the next waits for the refill."""
        decisions = [self.state.take_request("alice", 6, 3) for _ in range(4)]
        self.assertEqual([d.allowed for d in decisions], [True, True, True, False])
        self.assertEqual([d.remaining for d in decisions], [2, 1, 0, 0])
        self.assertEqual(decisions[3].retry_after, 10.0)  # 6 per minute: one per 10 s
        self.assertEqual(decisions[3].reset_after, 30.0)

    def test_refill(self) -> None:
        """After 1/rate seconds one more request is allowed, not two."""
        for _ in range(3):
            self.state.take_request("alice", 6, 3)
        self.clock.advance(10)
        self.assertTrue(self.state.take_request("alice", 6, 3).allowed)
        self.assertFalse(self.state.take_request("alice", 6, 3).allowed)

    def test_refused_requests_do_not_count(self) -> None:
        """Hammering while refused does not push the next allowed request further."""
        for _ in range(3):
            self.state.take_request("alice", 6, 3)
        for _ in range(50):
            self.state.take_request("alice", 6, 3)
        self.clock.advance(10)
        self.assertTrue(self.state.take_request("alice", 6, 3).allowed)

    def test_subjects_apart(self) -> None:
        """One subject's bucket does not drain another's."""
        self.state.take_request("alice", 60, 1)
        self.assertFalse(self.state.take_request("alice", 60, 1).allowed)
        self.assertTrue(self.state.take_request("bob", 60, 1).allowed)


class BucketPruningTests(SynchronousTestCase):
    """Buckets of idle subjects are forgotten (bounded memory), never before they are full
    again, whatever the rates of the roles sharing the state."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.state = LocalLimitState(self.clock)

    def sweep(self, per_minute: int, burst: int) -> None:
        """Enough requests of other subjects to run one sweep, the last one now."""
        for n in range(_PRUNE_EVERY):
            self.state.take_request(f"other-{n}", per_minute, burst)

    def test_slow_bucket_kept_through_a_fast_sweep(self) -> None:
        """A subject of a slow role who spent its burst stays limited when a sweep runs on a
        request of a fast role: its bucket is not forgotten before it is full again."""
        self.state.take_request("alice", 1, 2)
        self.assertTrue(self.state.take_request("alice", 1, 2).allowed)
        self.clock.advance(1)
        self.sweep(600, 1)
        self.assertFalse(self.state.take_request("alice", 1, 2).allowed)

    def test_fast_buckets_forgotten_by_a_slow_sweep(self) -> None:
        """Buckets of a fast role that are full again are forgotten by a sweep that runs on
        a request of a slow role."""
        for n in range(_PRUNE_EVERY - 1):
            self.state.take_request(f"fast-{n}", 600, 1)
        self.clock.advance(1)
        self.state.take_request("slow", 1, 10)
        self.assertEqual(list(self.state._buckets), ["slow"])

    def test_forgotten_bucket_starts_full(self) -> None:
        """A subject whose bucket was forgotten gets its whole burst, as it would have."""
        for _ in range(3):
            self.state.take_request("alice", 6, 3)
        self.clock.advance(30)
        self.sweep(6, 3)
        self.assertNotIn("alice", self.state._buckets)
        decisions = [self.state.take_request("alice", 6, 3) for _ in range(4)]
        self.assertEqual([d.allowed for d in decisions], [True, True, True, False])


class ConcurrencySlotTests(SynchronousTestCase):
    """A count of places per key, and requests waiting for one in order."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.state = LocalLimitState(self.clock)

    def test_limit(self) -> None:
        """``limit`` places are given; then None at once when nobody waits."""
        first = self.state.acquire_slot("alice", 2, 0)
        second = self.state.acquire_slot("alice", 2, 0)
        self.assertTrue(ISlot.providedBy(first) and ISlot.providedBy(second))
        self.assertIsNone(self.state.acquire_slot("alice", 2, 0))
        assert first is not None and not isinstance(first, Deferred)
        first.release()
        self.assertIsNotNone(self.state.acquire_slot("alice", 2, 0))

    def test_release_is_idempotent(self) -> None:
        """Releasing twice frees one place, not two."""
        slot = self.state.acquire_slot("alice", 1, 0)
        assert slot is not None and not isinstance(slot, Deferred)
        slot.release()
        slot.release()
        self.assertIsNotNone(self.state.acquire_slot("alice", 1, 0))
        self.assertIsNone(self.state.acquire_slot("alice", 1, 0))

    def test_waiter_gets_the_freed_place(self) -> None:
        """A waiting request gets the place as soon as it is released, in arrival order."""
        held = self.state.acquire_slot("alice", 1, 0)
        first = self.state.acquire_slot("alice", 1, 5)
        second = self.state.acquire_slot("alice", 1, 5)
        assert isinstance(first, Deferred) and isinstance(second, Deferred)
        self.assertNoResult(first)
        assert held is not None and not isinstance(held, Deferred)
        held.release()
        self.assertTrue(ISlot.providedBy(self.successResultOf(first)))
        self.assertNoResult(second)

    def test_wait_ends_with_none(self) -> None:
        """A request that waited ``wait`` seconds in vain gets None; it no longer waits."""
        held = self.state.acquire_slot("alice", 1, 0)
        waiting = self.state.acquire_slot("alice", 1, 2)
        assert isinstance(waiting, Deferred)
        self.clock.advance(2)
        self.assertIsNone(self.successResultOf(waiting))
        assert held is not None and not isinstance(held, Deferred)
        held.release()
        self.assertIsNotNone(self.state.acquire_slot("alice", 1, 0))

    def test_cancelled_wait(self) -> None:
        """A wait given up (its exchange ended) does not take the next free place."""
        held = self.state.acquire_slot("alice", 1, 0)
        waiting = self.state.acquire_slot("alice", 1, 5)
        assert isinstance(waiting, Deferred)
        waiting.cancel()
        self.failureResultOf(waiting)
        assert held is not None and not isinstance(held, Deferred)
        held.release()
        self.assertIsNotNone(self.state.acquire_slot("alice", 1, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_waiters_that_end_at_once(self) -> None:
        """Many waiting requests that give their place back as soon as they get it (their
        client left, a later filter refused them) hand it on down the queue, and the place
        is free at the end."""
        held = self.state.acquire_slot("alice", 1, 0)
        waiting = [self.state.acquire_slot("alice", 1, 5) for _ in range(2000)]
        served: list[object] = []
        for waiter in waiting:
            assert isinstance(waiter, Deferred)
            waiter.addCallback(served.append).addCallback(lambda _: served[-1].release())
        assert held is not None and not isinstance(held, Deferred)
        held.release()
        self.assertEqual(len(served), 2000)
        for waiter in waiting:
            self.successResultOf(waiter)
        self.assertIsNotNone(self.state.acquire_slot("alice", 1, 0))
        self.assertEqual(self.clock.getDelayedCalls(), [])


class TokenTotalTests(SynchronousTestCase):
    """Daily totals with leases that never exceed the limit."""

    def setUp(self) -> None:
        self.state = LocalLimitState(Clock())

    def test_lease_within_limit(self) -> None:
        """A lease grants what is left at most, and counts it at once."""
        self.assertEqual(self.state.lease_tokens("alice", "2026-12-05", 100, 60), (60, 40))
        self.assertEqual(self.state.lease_tokens("alice", "2026-12-05", 100, 60), (40, 0))
        self.assertEqual(self.state.lease_tokens("alice", "2026-12-05", 100, 60), (0, 0))
        self.assertEqual(self.state.tokens_used("alice", "2026-12-05"), 100)

    def test_needed_or_nothing(self) -> None:
        """A lease that needs more than is left takes nothing and says what is left."""
        self.state.lease_tokens("alice", "2026-12-05", 100, 95)
        self.assertEqual(self.state.lease_tokens("alice", "2026-12-05", 100, 20, need=10),
                         (0, 5))
        self.assertEqual(self.state.lease_tokens("alice", "2026-12-05", 100, 20, need=5),
                         (5, 0))

    def test_give_back(self) -> None:
        """Unused leased tokens given back are free again."""
        self.state.lease_tokens("alice", "2026-12-05", 100, 100)
        self.state.add_tokens("alice", "2026-12-05", -30)
        self.assertEqual(self.state.tokens_used("alice", "2026-12-05"), 70)

    def test_lease_noted(self) -> None:
        """The tokens a lease grants are noted in the request's lease, by this state."""
        lease = TokenLease()
        self.state.lease_tokens("alice", "2026-12-05", 100, 60, lease=lease)
        self.state.lease_tokens("alice", "2026-12-05", 100, 60, lease=lease)
        self.assertEqual(lease.runs, [(self.state, 100)])

    def test_settle_gives_back(self) -> None:
        """A request that used 30 of its 100 leased tokens leaves 30 counted."""
        lease = TokenLease()
        self.state.lease_tokens("alice", "2026-12-05", 100, 100, lease=lease)
        self.state.settle_lease("alice", "2026-12-05", lease, 30)
        self.assertEqual(self.state.tokens_used("alice", "2026-12-05"), 30)

    def test_settle_counts_beyond(self) -> None:
        """A request that used more than it leased is counted what it used."""
        lease = TokenLease()
        self.state.lease_tokens("alice", "2026-12-05", 100, 10, lease=lease)
        self.state.settle_lease("alice", "2026-12-05", lease, 14)
        self.assertEqual(self.state.tokens_used("alice", "2026-12-05"), 14)

    def test_usage_counted_past_the_limit(self) -> None:
        """Usage that happened is counted even beyond the limit."""
        self.state.add_tokens("alice", "2026-12-05", 150)
        self.assertEqual(self.state.lease_tokens("alice", "2026-12-05", 100, 10), (0, 0))
        self.assertEqual(self.state.tokens_used("alice", "2026-12-05"), 150)

    def test_new_day_starts_from_nothing(self) -> None:
        """The next day has its own totals."""
        self.state.add_tokens("alice", "2026-12-05", 100)
        self.assertEqual(self.state.tokens_used("alice", "2026-12-06"), 0)

    def test_day_before_still_limits_its_streams(self) -> None:
        """After midnight, a stream admitted the day before still takes from that day's
        quota: it is not let through without limit."""
        self.state.add_tokens("alice", "2026-12-05", 95)
        self.state.add_tokens("bob", "2026-12-06", 1)
        self.assertEqual(self.state.lease_tokens("alice", "2026-12-05", 100, 16), (5, 0))
        self.assertEqual(self.state.lease_tokens("alice", "2026-12-05", 100, 16), (0, 0))

    def test_older_days_forgotten(self) -> None:
        """Only the current day and the one before are kept; a report of an older day
        changes nothing."""
        self.state.add_tokens("alice", "2026-12-04", 50)
        self.state.add_tokens("alice", "2026-12-05", 10)
        self.state.add_tokens("alice", "2026-12-06", 1)
        self.state.add_tokens("alice", "2026-12-04", 50)
        self.assertEqual(self.state.tokens_used("alice", "2026-12-04"), 0)
        self.assertEqual(self.state.tokens_used("alice", "2026-12-05"), 10)

    def test_seed(self) -> None:
        """Usage read from the ledger at start counts against today's quota."""
        self.state.seed("2026-12-05", {"alice": 90})
        self.assertEqual(self.state.lease_tokens("alice", "2026-12-05", 100, 60), (10, 0))
