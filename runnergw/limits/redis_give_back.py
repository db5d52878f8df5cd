"""What requests give back to Redis as they end, sent together.

A request that ends gives back its concurrency slot and the tokens of its lease it did not
use. Nobody waits for either: they are gathered, and sent in one ``GIVE_BACK`` call before
this node's next call to Redis (the connection's ``before_call``: in the same write, so that
a check sees them) or within ``LINGER`` seconds, whichever comes first. Under load one call
carries what many requests gave back.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.limits.redis_connection import RedisConnection, RedisError
from runnergw.limits.redis_scripts import FREE_SLOT, GIVE_BACK
from runnergw.limits.redis_undo import Undo, Undoing

__all__ = ["LINGER", "GiveBacks"]

LINGER = 0.002
"""Seconds what was given back waits for this node's next check to go with it."""

_GATHERED_MOST = 256
"""Slots and counts sent in one call at most (the call stays small)."""


class GiveBacks:
    """Slots freed and tokens counted, gathered and sent in one call.

    A slot whose call fails is freed again by ``undoing`` (sent every second until Redis
    answers; freeing twice does nothing more). Each count has its own Deferred, failing as
    the call failed (``RedisNotSent``: Redis surely did not count it; ``RedisUnavailable``:
    it was sent, and counts; ``RedisError``): its caller decides where it is counted then.
    The whole script is sent (EVAL), so that no late ``NOSCRIPT`` can leave it unrun.
    """

    log = Logger()

    def __init__(self, connection: RedisConnection, clock: IReactorTime, undoing: Undoing,
                 day_kept: int, kept_ms: int) -> None:
        self.connection = connection
        self.clock = clock
        self.undoing = undoing
        self.day_kept = day_kept
        self.kept_ms = kept_ms
        self._slots: list[tuple[str, str, str]] = []
        """(slots key, marker key, slot id) of each slot given back."""
        self._counts: list[tuple[str, str, int, Deferred[None]]] = []
        """(day key, subject, tokens, answer) of each count."""
        self._timer: IDelayedCall | None = None

    def free_slot(self, slots_key: str, marker_key: str, slot_id: str) -> None:
        """Give a slot back."""
        self._slots.append((slots_key, marker_key, slot_id))
        self._gathered()

    def count(self, day_key: str, subject: str, tokens: int) -> Deferred[None]:
        """Add ``tokens`` (negative: given back) to the subject's total of a day."""
        answer: Deferred[None] = Deferred()
        self._counts.append((day_key, subject, tokens, answer))
        self._gathered()
        return answer

    def _gathered(self) -> None:
        if len(self._slots) + len(self._counts) >= _GATHERED_MOST:
            self.send()
        elif self._timer is None:
            self._timer = self.clock.callLater(LINGER, self.send)

    def send(self) -> None:
        """Send what was gathered (now: before a check, at the linger's end, at a stop)."""
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()
        slots, self._slots = self._slots, []
        counts, self._counts = self._counts, []
        if not slots and not counts:
            return
        keys = [key for slots_key, marker, _ in slots for key in (slots_key, marker)]
        keys += [day_key for day_key, _, _, _ in counts]
        args: list[str | int] = [self.kept_ms, self.day_kept, len(slots)]
        args += [slot_id for _, _, slot_id in slots]
        for _, subject, tokens, _ in counts:
            args += [subject, tokens]
        sent = self.connection.call("EVAL", GIVE_BACK.source, len(keys), *keys, *args)
        sent.addCallbacks(self._sent, self._failed, errbackArgs=(slots, counts),
                          callbackArgs=(counts,))

    def _sent(self, _: Any, counts: list[tuple[str, str, int, Deferred[None]]]) -> None:
        for _, _, _, answer in counts:
            answer.callback(None)

    def _failed(self, failure: Failure, slots: list[tuple[str, str, str]],
                counts: list[tuple[str, str, int, Deferred[None]]]) -> None:
        if failure.check(RedisError):
            self.log.error("Redis refused to take back {slots} slots and {counts} counts: "
                           "{reason}", slots=len(slots), counts=len(counts),
                           reason=failure.getErrorMessage(), event="limiter_give_back_failed")
        else:
            for slots_key, marker, slot_id in slots:
                self.undoing.add(Undo(FREE_SLOT, [slots_key, marker], [slot_id, self.kept_ms],
                                      "a concurrency slot", late=False))
        for _, _, _, answer in counts:
            answer.errback(failure)
