"""One request's limit checks handed to its ``Admission``: made at once with a state that
answers each call at once, else kept until the chain settles them, then made in one step and
judged by their filters in the order given."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.admission import IAdmission
from runnergw.chain.exchange import Reject
from runnergw.limits.admission import HELD_BODY_MOST, Admission, admission_for
from runnergw.limits.checks import BucketCheck, Check, LeaseCheck, SlotCheck
from runnergw.limits.interfaces import TokenLease
from runnergw.limits.local import LocalLimitState
from runnergw.testing import make_exchange

__all__ = ["AdmissionForTests", "AtOnceTests", "GatheredTests", "HeldTests"]

_DAY = "2026-12-05"


class _Judges:
    """The filters' readings of their checks: each noted in the order run, refusing with
    its own status when its check is refused."""

    def __init__(self) -> None:
        self.run: list[str] = []

    def judge(self, name: str, status: int) -> Callable[[Check], None]:
        def judged(check: Check) -> None:
            self.run.append(name)
            if check.refused:
                raise Reject(status, f"{name} refused")
        return judged


class _Admitting(SynchronousTestCase):
    gathers = False

    def setUp(self) -> None:
        self.clock = Clock()
        self.state = LocalLimitState(self.clock)
        if self.gathers:
            self.state.gathers_checks = True  # type: ignore[misc]
        self.admission = Admission(self.state)
        self.judges = _Judges()

    def add_bucket(self, burst: int = 3) -> Any:
        return self.admission.add(BucketCheck("alice", 6, burst),
                                  self.judges.judge("bucket", 429))

    def add_slot(self, wait: float = 0) -> tuple[SlotCheck, Any]:
        check = SlotCheck("alice", 1, wait)
        return check, self.admission.add(check, self.judges.judge("slot", 429))

    def add_lease(self) -> tuple[LeaseCheck, Any]:
        check = LeaseCheck("alice", _DAY, 1000, 30, 11, TokenLease())
        return check, self.admission.add(check, self.judges.judge("lease", 429))

    def spend_bucket(self) -> None:
        for _ in range(3):
            self.state.take_request("alice", 6, 3)


class AtOnceTests(_Admitting):
    """A state in this process: each check is made, and judged, as it is given."""

    def test_made_when_added(self) -> None:
        """A check given is answered and judged at once, with no Deferred."""
        check, made = self.add_slot()
        self.assertIsNone(made)
        self.assertEqual((check.answered, self.judges.run), (True, ["slot"]))

    def test_refused_when_added(self) -> None:
        """A refused check raises its filter's refusal from ``add`` itself."""
        self.spend_bucket()
        with self.assertRaises(Reject) as raised:
            self.add_bucket()
        self.assertEqual(raised.exception.status, 429)

    def test_hold_does_not_hold(self) -> None:
        """Nothing waits to be held: ``hold`` leaves the admission unheld, so the chain
        never keeps checks over the body read for it."""
        self.admission.hold(100)
        self.assertFalse(self.admission.held)

    def test_nothing_left_to_settle(self) -> None:
        """Once the checks were made as given, settling has nothing to do."""
        self.add_slot()
        self.assertIsNone(self.admission.settle())
        self.assertEqual(self.judges.run, ["slot"])


class GatheredTests(_Admitting):
    """A state whose calls are round trips: the checks wait, then are made in one step."""

    gathers = True

    def test_provides_the_interface(self) -> None:
        """The chain sees it as a request's admission."""
        self.assertTrue(IAdmission.providedBy(self.admission))

    def test_wait_until_settled(self) -> None:
        """Checks given are not made (the subject's place stays free) until settled."""
        check, made = self.add_slot()
        self.assertEqual((made, check.answered, self.judges.run), (None, False, []))
        self.assertIsNotNone(self.state.acquire_slot("alice", 1, 0))

    def test_settle_makes_them_all(self) -> None:
        """Settling makes every check waiting and runs their judges in the order they
        were given."""
        self.add_bucket()
        slot, _ = self.add_slot()
        lease, _ = self.add_lease()
        self.assertIsNone(self.admission.settle())
        self.assertEqual(self.judges.run, ["bucket", "slot", "lease"])
        self.assertEqual((slot.refused, lease.granted), (False, 30))

    def test_first_refused_refuses(self) -> None:
        """The refusal is the first refused check's: a rate-limited request gets the
        bucket's 429, not the slot's."""
        self.spend_bucket()
        self.state.acquire_slot("alice", 1, 0)
        self.add_bucket()
        self.add_slot()
        with self.assertRaises(Reject) as raised:
            self.admission.settle()
        self.assertEqual((str(raised.exception.message), self.judges.run),
                         ("bucket refused", ["bucket"]))

    def test_earlier_judged_before_the_refusal(self) -> None:
        """Checks that passed before the refused one are judged (their filters note their
        answer), the refused one's refusal raised after them."""
        self.state.acquire_slot("alice", 1, 0)
        self.add_bucket()
        self.add_slot()
        self.add_lease()
        self.assertRaises(Reject, self.admission.settle)
        self.assertEqual(self.judges.run, ["bucket", "slot"])

    def test_later_checks_not_made(self) -> None:
        """After a refused check, the later ones are not made: no tokens are taken from
        the quota of a rate-limited request."""
        self.spend_bucket()
        self.add_bucket()
        lease, _ = self.add_lease()
        self.assertRaises(Reject, self.admission.settle)
        self.assertEqual((lease.answered, self.state.tokens_used("alice", _DAY)), (False, 0))

    def test_settle_waits_for_a_place(self) -> None:
        """A check waiting for a place makes the settling a Deferred; the judges run once
        the place is given."""
        held = self.state.acquire_slot("alice", 1, 0)
        self.add_slot(wait=2.0)
        settled = self.admission.settle()
        self.assertIsInstance(settled, Deferred)
        self.assertEqual(self.judges.run, [])
        held.release()
        self.successResultOf(settled)
        self.assertEqual(self.judges.run, ["slot"])

    def test_wait_in_vain_refuses(self) -> None:
        """A wait for a place that ends without one fails the settling with the slot
        filter's refusal."""
        self.state.acquire_slot("alice", 1, 0)
        self.add_slot(wait=2.0)
        settled = self.admission.settle()
        self.clock.advance(2.0)
        self.failureResultOf(settled, Reject)

    def test_settled_once(self) -> None:
        """Checks settled are not made again: settling twice takes one request from the
        bucket."""
        self.add_bucket()
        self.admission.settle()
        self.assertIsNone(self.admission.settle())
        self.assertEqual(self.state.take_request("alice", 6, 3).remaining, 1)

    def test_nothing_waiting(self) -> None:
        """Settling with no check given does nothing and needs no Deferred."""
        self.assertIsNone(self.admission.settle())


class HeldTests(_Admitting):
    """Checks held over the body read for the check a body hook adds last."""

    gathers = True

    def test_hold(self) -> None:
        """``hold`` marks the checks as kept for a body hook."""
        self.add_bucket()
        self.admission.hold(100)
        self.assertTrue(self.admission.held)

    def test_large_body_not_held(self) -> None:
        """A body announcing more than ``HELD_BODY_MOST`` bytes, or no size (chunked), is
        not waited over: its checks are made before it is read."""
        self.add_bucket()
        self.admission.hold(HELD_BODY_MOST + 1)
        self.assertFalse(self.admission.held)
        self.admission.hold(None)
        self.assertFalse(self.admission.held)
        self.admission.hold(HELD_BODY_MOST)
        self.assertTrue(self.admission.held)

    def test_settle_ends_the_hold(self) -> None:
        """Settling (the body hook's last check given) ends the hold and makes the held
        checks with the new one."""
        self.add_bucket()
        self.admission.hold(100)
        lease, _ = self.add_lease()
        self.admission.settle()
        self.assertEqual((self.admission.held, self.judges.run, lease.granted),
                         (False, ["bucket", "lease"], 30))


class AdmissionForTests(SynchronousTestCase):
    """The exchange's one admission, shared by its limit filters."""

    def test_one_per_exchange(self) -> None:
        """The first limit filter makes the exchange's admission; the next ones add to it."""
        exchange = make_exchange("POST", "/api/generate")
        state = LocalLimitState(Clock())
        first = admission_for(exchange, state)
        self.assertIs(exchange.admission, first)
        self.assertIs(admission_for(exchange, state), first)
