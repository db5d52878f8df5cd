"""Per-model concurrency: a few jobs run (one GPU: one job), a bounded FIFO queue waits.

Requests are admitted before their upload is read, and the line bounds everything a model
has in hand at once: uploads being received, files being measured, jobs waiting and running.
A request leaves the line once its job is over; sending the reply does not hold it. A reload
may change both limits (``resize``): what is in hand already stays.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred, succeed

__all__ = ["Admission", "JobSlots", "QueueFull"]


class QueueFull(Exception):
    """``concurrency + max_waiting`` requests are in hand already."""


class Admission:
    """One admitted request's place in line."""

    def __init__(self, slots: JobSlots) -> None:
        self._slots = slots
        self._left = False

    def leave(self) -> None:
        """Give the place up; safe to call more than once."""
        if not self._left:
            self._left = True
            self._slots.admitted -= 1


class JobSlots:
    """``concurrency`` jobs at once, the other admitted requests wait in arrival order."""

    def __init__(self, concurrency: int, max_waiting: int) -> None:
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.running = 0
        self.admitted = 0
        """Requests in hand, from admission until their job is over."""
        self._waiting: deque[Deferred[None]] = deque()

    def admit(self) -> Admission:
        """Take a request in (before its upload).

        Raises:
            QueueFull: ``concurrency + max_waiting`` requests are in hand already.
        """
        if self.admitted >= self.concurrency + self.max_waiting:
            raise QueueFull()
        self.admitted += 1
        return Admission(self)

    @property
    def waiting(self) -> int:
        """Requests in line for a slot."""
        return len(self._waiting)

    @property
    def idle(self) -> bool:
        """Whether no request is in hand: none admitted, none waiting, no job running."""
        return self.running == 0 and self.admitted == 0 and not self._waiting

    def resize(self, concurrency: int, max_waiting: int) -> None:
        """Take new limits (a reload changed ``concurrency`` or ``queueSize``).

        The jobs running keep running and the requests in hand keep their place: a higher
        ``concurrency`` starts waiting requests at once, a lower one starts none until fewer
        jobs run than it; a line longer than the new bound admits no one until it is shorter.
        """
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self._start_waiting()

    def acquire(self) -> Deferred[None]:
        """A Deferred that fires when an admitted request's job may start.

        Cancelling it (the client left) takes the request out of the line: it never starts.
        Admission keeps the line within ``max_waiting``.
        """
        if self.running < self.concurrency and not self._waiting:
            self.running += 1
            return succeed(None)
        waiter: Deferred[None] = Deferred(self._leave_line)
        self._waiting.append(waiter)
        return waiter

    def _leave_line(self, waiter: Deferred[None]) -> None:
        try:
            self._waiting.remove(waiter)
        except ValueError:
            pass

    def release(self) -> None:
        """A job ended: start the next in line, if any (and a slot is free under the
        current ``concurrency``)."""
        self.running -= 1
        self._start_waiting()

    def _start_waiting(self) -> None:
        # A started request may end at once and release its slot: each turn looks again.
        while self._waiting and self.running < self.concurrency:
            self.running += 1
            self._waiting.popleft().callback(None)
