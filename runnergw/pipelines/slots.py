"""Per-model concurrency: a few jobs run (one GPU: one job), a bounded FIFO queue waits.

Requests are admitted before their upload is read, and the line bounds everything a model
has in hand at once: uploads being received, files being measured, jobs waiting and running.
"""

from __future__ import annotations

from collections import deque

from twisted.internet.defer import Deferred, succeed

__all__ = ["JobSlots", "QueueFull"]


class QueueFull(Exception):
    """Every slot is busy and the waiting line is full."""


class JobSlots:
    """``concurrency`` jobs at once; up to ``max_waiting`` more wait in arrival order."""

    def __init__(self, concurrency: int, max_waiting: int) -> None:
        self.concurrency = concurrency
        self.max_waiting = max_waiting
        self.running = 0
        self.admitted = 0
        """Requests in hand, from admission to their end (running and waiting included)."""
        self._waiting: deque[Deferred[None]] = deque()

    def admit(self) -> None:
        """Take a request in (before its upload); ``leave`` when it is over.

        Raises:
            QueueFull: ``concurrency + max_waiting`` requests are in hand already.
        """
        if self.admitted >= self.concurrency + self.max_waiting:
            raise QueueFull()
        self.admitted += 1

    def leave(self) -> None:
        """An admitted request is over."""
        self.admitted -= 1

    @property
    def waiting(self) -> int:
        """Requests in line."""
        return len(self._waiting)

    def acquire(self) -> Deferred[None]:
        """A Deferred that fires when the job may start.

        Cancelling it (the client left) takes the request out of the line: it never starts.

        Raises:
            QueueFull: no slot and no room in the line.
        """
        if self.running < self.concurrency and not self._waiting:
            self.running += 1
            return succeed(None)
        if len(self._waiting) >= self.max_waiting:
            raise QueueFull()
        waiter: Deferred[None] = Deferred(self._leave)
        self._waiting.append(waiter)
        return waiter

    def _leave(self, waiter: Deferred[None]) -> None:
        try:
            self._waiting.remove(waiter)
        except ValueError:
            pass

    def release(self) -> None:
        """A job ended: start the next in line, if any."""
        if self._waiting:
            self._waiting.popleft().callback(None)
        else:
            self.running -= 1
