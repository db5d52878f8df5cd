"""A model's slots: how many jobs run at once, who waits in line and in what order, when a
request is turned away, and new limits taken from a reload."""

from __future__ import annotations

from twisted.internet.defer import CancelledError
from twisted.trial.unittest import SynchronousTestCase

from runnergw.jobs.slots import JobSlots, QueueFull

__all__ = ["AdmissionTests", "ResizeTests", "SlotTests"]


class AdmissionTests(SynchronousTestCase):
    """Requests are admitted before their upload, up to running plus waiting."""

    def test_the_line_is_bounded(self) -> None:
        """With one slot and two places in line, a fourth request is turned away."""
        slots = JobSlots(concurrency=1, max_waiting=2)
        admissions = [slots.admit() for _ in range(3)]
        self.assertRaises(QueueFull, slots.admit)
        self.assertEqual(slots.admitted, 3)
        admissions[0].leave()
        slots.admit()

    def test_leaving_twice_frees_one_place(self) -> None:
        """A request that leaves the line twice does not make room for two others."""
        slots = JobSlots(concurrency=1, max_waiting=0)
        admission = slots.admit()
        admission.leave()
        admission.leave()
        self.assertEqual(slots.admitted, 0)
        slots.admit()
        self.assertRaises(QueueFull, slots.admit)


class SlotTests(SynchronousTestCase):
    """Admitted requests start their jobs as slots free up, first come first served."""

    def test_free_slots_start_at_once(self) -> None:
        """As many jobs as slots start without waiting."""
        slots = JobSlots(concurrency=2, max_waiting=5)
        self.successResultOf(slots.acquire())
        self.successResultOf(slots.acquire())
        self.assertNoResult(slots.acquire())
        self.assertEqual((slots.running, slots.waiting), (2, 1))

    def test_waiting_jobs_start_in_arrival_order(self) -> None:
        """Each slot released starts the request that has waited longest."""
        slots = JobSlots(concurrency=1, max_waiting=5)
        self.successResultOf(slots.acquire())
        first, second = slots.acquire(), slots.acquire()
        slots.release()
        self.successResultOf(first)
        self.assertNoResult(second)
        slots.release()
        self.successResultOf(second)
        self.assertEqual((slots.running, slots.waiting), (1, 0))

    def test_a_request_that_leaves_the_line_never_starts(self) -> None:
        """Cancelling a wait (the client left) takes it out: the next in line gets the slot."""
        slots = JobSlots(concurrency=1, max_waiting=5)
        self.successResultOf(slots.acquire())
        gone, next_one = slots.acquire(), slots.acquire()
        gone.cancel()
        self.failureResultOf(gone, CancelledError)
        slots.release()
        self.successResultOf(next_one)
        self.assertEqual(slots.waiting, 0)

    def test_released_slot_is_free_again(self) -> None:
        """With nobody waiting, a released slot serves the next request at once."""
        slots = JobSlots(concurrency=1, max_waiting=0)
        self.successResultOf(slots.acquire())
        slots.release()
        self.assertEqual(slots.running, 0)
        self.successResultOf(slots.acquire())


class ResizeTests(SynchronousTestCase):
    """``resize``: a reload's new ``concurrency`` and ``queueSize``; what is in hand stays."""

    def test_more_slots_start_waiting_jobs_at_once(self) -> None:
        """Raising the concurrency from 1 to 3 starts the two waiting jobs, in order, without
        waiting for the running one to end."""
        slots = JobSlots(concurrency=1, max_waiting=5)
        self.successResultOf(slots.acquire())
        waiting = [slots.acquire() for _ in range(3)]
        slots.resize(3, 5)
        self.successResultOf(waiting[0])
        self.successResultOf(waiting[1])
        self.assertNoResult(waiting[2])
        self.assertEqual((slots.running, slots.waiting), (3, 1))

    def test_fewer_slots_keep_the_running_jobs(self) -> None:
        """Lowering the concurrency from 3 to 1 ends no job; no job starts until fewer than
        one run, however many end before that."""
        slots = JobSlots(concurrency=3, max_waiting=5)
        for _ in range(3):
            self.successResultOf(slots.acquire())
        slots.resize(1, 5)
        self.assertEqual(slots.running, 3)
        waiter = slots.acquire()
        slots.release()
        slots.release()
        self.assertNoResult(waiter)
        self.assertEqual(slots.running, 1)
        slots.release()
        self.successResultOf(waiter)
        self.assertEqual((slots.running, slots.waiting), (1, 0))

    def test_shorter_line_keeps_its_requests_and_takes_no_more(self) -> None:
        """Shortening the line below the requests in it keeps them all in line, in order; a
        new request is turned away until the line is shorter than the new bound."""
        slots = JobSlots(concurrency=1, max_waiting=3)
        admissions = [slots.admit() for _ in range(4)]
        self.successResultOf(slots.acquire())
        waiting = [slots.acquire() for _ in range(3)]
        slots.resize(1, 1)
        self.assertEqual(slots.waiting, 3)
        self.assertRaises(QueueFull, slots.admit)
        admissions[0].leave()
        slots.release()
        self.successResultOf(waiting[0])
        self.assertRaises(QueueFull, slots.admit)  # three in hand, two allowed
        admissions[1].leave()
        self.assertRaises(QueueFull, slots.admit)
        admissions[2].leave()
        slots.admit()
        self.assertNoResult(waiting[2])

    def test_idle(self) -> None:
        """Slots are idle only while no request is admitted, waiting or running."""
        slots = JobSlots(concurrency=1, max_waiting=1)
        self.assertTrue(slots.idle)
        admission = slots.admit()
        self.assertFalse(slots.idle)
        self.successResultOf(slots.acquire())
        admission.leave()
        self.assertFalse(slots.idle)
        slots.release()
        self.assertTrue(slots.idle)
