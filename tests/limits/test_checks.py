"""A request's limit checks (bucket, slot, first lease): each one's answer, and the checks
made in turn through a state that answers each call, up to the first refused."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.limits.checks import BucketCheck, LeaseCheck, SlotCheck, admit_in_turn
from runnergw.limits.interfaces import RateDecision, TokenLease
from runnergw.limits.local import LocalLimitState

__all__ = ["AdmitInTurnTests", "BucketCheckTests", "LeaseCheckTests", "SlotCheckTests"]

_DAY = "2026-12-05"


def _lease(want: int = 30, need: int = 11, limit: int = 1000) -> LeaseCheck:
    return LeaseCheck("alice", _DAY, limit, want, need, TokenLease())


class BucketCheckTests(SynchronousTestCase):
    """A request counted against its subject's bucket."""

    def test_unanswered(self) -> None:
        """Before the state answers, the check is neither answered nor refused: no 429
        is sent for a request whose bucket was not asked."""
        check = BucketCheck("alice", 6, 3)
        self.assertEqual((check.answered, check.refused), (False, False))

    def test_allowed(self) -> None:
        """A bucket that allows the request: answered, not refused."""
        check = BucketCheck("alice", 6, 3)
        check.answer(RateDecision(True, 3, 2, 10.0, 0.0))
        self.assertEqual((check.answered, check.refused), (True, False))

    def test_refused(self) -> None:
        """A bucket that has no request left refuses the check."""
        check = BucketCheck("alice", 6, 3)
        check.answer(RateDecision(False, 3, 0, 30.0, 10.0))
        self.assertEqual((check.answered, check.refused), (True, True))

    def test_asked_of_the_state(self) -> None:
        """Asking takes one request from the subject's bucket in the state, and the
        decision is the bucket's."""
        state = LocalLimitState(Clock())
        check = BucketCheck("alice", 6, 3)
        check.ask(state)
        self.assertEqual(check.decision, RateDecision(True, 3, 2, 10.0, 0.0))


class SlotCheckTests(SynchronousTestCase):
    """A place under the subject's concurrency limit."""

    def test_unanswered(self) -> None:
        """Before the state answers (a request still waiting for a place), the check is
        neither answered nor refused."""
        check = SlotCheck("alice", 1, 2.0)
        self.assertEqual((check.answered, check.refused), (False, False))

    def test_placed(self) -> None:
        """A place given: answered, not refused, the place kept for the request's end."""
        state = LocalLimitState(Clock())
        check = SlotCheck("alice", 1, 0)
        check.ask(state)
        self.assertEqual((check.answered, check.refused), (True, False))
        self.assertIsNotNone(check.slot)

    def test_no_place(self) -> None:
        """No place free (nor within the wait): answered and refused."""
        state = LocalLimitState(Clock())
        state.acquire_slot("alice", 1, 0)
        check = SlotCheck("alice", 1, 0)
        check.ask(state)
        self.assertEqual((check.answered, check.refused, check.slot), (True, True, None))


class LeaseCheckTests(SynchronousTestCase):
    """Tokens taken from the subject's daily quota."""

    def test_unanswered(self) -> None:
        """Before the state answers, the lease is neither answered nor refused."""
        check = _lease()
        self.assertEqual((check.answered, check.refused), (False, False))

    def test_granted_in_part(self) -> None:
        """Fewer tokens than wanted but at least the ones needed: not refused (a stream
        is capped to what is left)."""
        check = _lease(want=30, need=11)
        check.answer(20, 0)
        self.assertEqual((check.answered, check.refused), (True, False))

    def test_none_granted(self) -> None:
        """Nothing granted (less than needed is left): refused, what is left known for
        the 429's message."""
        check = _lease(want=30, need=11)
        check.answer(0, 7)
        self.assertEqual((check.answered, check.refused, check.left), (True, True, 7))

    def test_want_below_need(self) -> None:
        """A stream wants its prompt and needs one more token: granted its prompt, it is
        not refused."""
        check = _lease(want=10, need=11)
        check.answer(10, 990)
        self.assertFalse(check.refused)

    def test_granted_recorded_in_the_lease(self) -> None:
        """Asking takes the tokens from the day's total and adds them to the request's
        lease, with the state that granted them (given back there at the end)."""
        state = LocalLimitState(Clock())
        check = _lease(want=30)
        check.ask(state)
        self.assertEqual((check.granted, check.left), (30, 970))
        self.assertEqual((check.lease.runs, state.tokens_used("alice", _DAY)),
                         ([(state, 30)], 30))


class AdmitInTurnTests(SynchronousTestCase):
    """A request's checks made one after the other, each by the state's own call, up to
    the first refused: what the limits did before the checks were made together."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.state = LocalLimitState(self.clock)

    def checks(self, wait: float = 0) -> tuple[BucketCheck, SlotCheck, LeaseCheck]:
        """A request's bucket (3 at once), slot (1 place) and first lease."""
        return BucketCheck("alice", 6, 3), SlotCheck("alice", 1, wait), _lease()

    def spend_bucket(self) -> None:
        for _ in range(3):
            self.state.take_request("alice", 6, 3)

    def test_all_made(self) -> None:
        """Nothing refuses: every check is answered at once (no Deferred)."""
        checks = self.checks()
        self.assertIsNone(admit_in_turn(self.state, checks))
        self.assertEqual([check.answered for check in checks], [True, True, True])
        self.assertEqual([check.refused for check in checks], [False, False, False])

    def test_bucket_refused_takes_no_slot(self) -> None:
        """A rate-limited request takes no concurrency place: another request of the
        subject still gets the only one."""
        self.spend_bucket()
        bucket, slot, _ = self.checks()
        admit_in_turn(self.state, [bucket, slot])
        self.assertEqual((bucket.refused, slot.answered), (True, False))
        self.assertIsNotNone(self.state.acquire_slot("alice", 1, 0))

    def test_bucket_refused_leases_nothing(self) -> None:
        """A rate-limited request takes nothing from the daily quota."""
        self.spend_bucket()
        bucket, _, lease = self.checks()
        admit_in_turn(self.state, [bucket, lease])
        self.assertEqual((lease.answered, self.state.tokens_used("alice", _DAY)), (False, 0))

    def test_slot_refused_leases_nothing(self) -> None:
        """A request over its concurrency limit takes nothing from the daily quota."""
        self.state.acquire_slot("alice", 1, 0)
        checks = self.checks()
        admit_in_turn(self.state, checks)
        self.assertEqual([check.answered for check in checks], [True, True, False])
        self.assertEqual(self.state.tokens_used("alice", _DAY), 0)

    def test_goes_on_after_a_wait(self) -> None:
        """A request waiting for a place takes its lease only once it has the place."""
        held = self.state.acquire_slot("alice", 1, 0)
        _, slot, lease = checks = self.checks(wait=2.0)
        admitted = admit_in_turn(self.state, checks)
        self.assertNoResult(admitted)
        self.assertEqual((slot.answered, lease.answered), (False, False))
        held.release()
        self.successResultOf(admitted)
        self.assertIsNotNone(slot.slot)
        self.assertEqual((lease.granted, self.state.tokens_used("alice", _DAY)), (30, 30))

    def test_wait_in_vain_leases_nothing(self) -> None:
        """A request whose wait for a place ends without one takes nothing from the
        daily quota."""
        self.state.acquire_slot("alice", 1, 0)
        _, slot, lease = checks = self.checks(wait=2.0)
        admitted = admit_in_turn(self.state, checks)
        self.clock.advance(2.0)
        self.successResultOf(admitted)
        self.assertEqual((slot.refused, lease.answered), (True, False))
        self.assertEqual(self.state.tokens_used("alice", _DAY), 0)

    def test_cancelled_wait_takes_nothing(self) -> None:
        """A request given up while it waits for a place (its client left) takes neither
        the place freed afterwards nor tokens."""
        held = self.state.acquire_slot("alice", 1, 0)
        _, slot, lease = checks = self.checks(wait=2.0)
        admitted = admit_in_turn(self.state, checks)
        admitted.cancel()
        self.failureResultOf(admitted, CancelledError)
        held.release()
        self.assertEqual((slot.answered, lease.answered), (False, False))
        self.assertIsNotNone(self.state.acquire_slot("alice", 1, 0))
        self.assertEqual(self.state.tokens_used("alice", _DAY), 0)

    def test_lease_refused_last(self) -> None:
        """A subject whose quota is spent is refused by its lease, its bucket and place
        taken before (given back by the filters at the request's end)."""
        self.state.add_tokens("alice", _DAY, 995)
        bucket, slot, lease = checks = self.checks()
        self.assertIsNone(admit_in_turn(self.state, checks))
        self.assertEqual([check.refused for check in checks], [False, False, True])
        self.assertIsNotNone(slot.slot)
        self.assertEqual(bucket.decision.remaining, 2)  # type: ignore[union-attr]
