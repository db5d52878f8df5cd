"""Undo steps: sent until Redis answers them, never twice at once, bounded while away."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from runnergw.limits import redis_undo
from runnergw.limits.redis_connection import Late, RedisError, RedisUnavailable
from runnergw.limits.redis_scripts import FREE_SLOT
from runnergw.limits.redis_undo import RETRY_EVERY, Undo, Undoing
from tests.helpers.killable_ollama import LogWatch

__all__ = ["UndoingTests"]

_UNDO = Undo(FREE_SLOT, ["t:slots", "t:gone:n:1"], ["n:1", 60_000], "a concurrency slot")


class _Connection:
    """Records each call; the test answers it, fails it, or tells its late outcome."""

    connected = True

    def __init__(self) -> None:
        self.scripts: set[str] = {FREE_SLOT.sha}
        self.calls: list[tuple[Deferred[Any], Late | None]] = []

    def call(self, *args: Any, late: Late | None = None) -> Deferred[Any]:
        reply: Deferred[Any] = Deferred()
        self.calls.append((reply, late))
        return reply


class UndoingTests(SynchronousTestCase):
    """What a late call took is given back, however long Redis stays away."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.connection = _Connection()
        self.undoing = Undoing(self.connection, self.clock)  # type: ignore[arg-type]
        self.addCleanup(self.undoing.stop)
        self.watch = LogWatch()
        self.addCleanup(self.watch.close)

    def _fail_unsent(self, index: int) -> None:
        reply, late = self.connection.calls[index]
        failure = Failure(RedisUnavailable("Redis is not connected"))
        reply.errback(failure)
        assert late is not None
        late(failure)

    def test_answered_once(self) -> None:
        """An undo Redis answers is done: logged, never sent again."""
        self.undoing.add(_UNDO)
        self.connection.calls[0][0].callback(1)
        self.clock.advance(RETRY_EVERY * 3)
        self.assertEqual(len(self.connection.calls), 1)
        self.assertEqual(len(self.watch.named("limiter_undone")), 1)

    def test_sent_again_until_answered(self) -> None:
        """An undo that could not reach Redis is sent every second until answered."""
        self.undoing.add(_UNDO)
        self._fail_unsent(0)
        self.clock.advance(RETRY_EVERY)
        self._fail_unsent(1)
        self.clock.advance(RETRY_EVERY)
        self.connection.calls[2][0].callback(0)
        self.clock.advance(RETRY_EVERY * 3)
        self.assertEqual(len(self.connection.calls), 3)
        self.assertEqual(len(self.watch.named("limiter_undone")), 1)

    def test_late_answer_ends_it(self) -> None:
        """An undo past its deadline is not sent again while its answer may still come;
        the late answer ends it."""
        self.undoing.add(_UNDO)
        reply, late = self.connection.calls[0]
        reply.errback(Failure(RedisUnavailable("Redis did not answer within 0.25 s")))
        self.clock.advance(RETRY_EVERY * 3)
        self.assertEqual(len(self.connection.calls), 1)
        assert late is not None
        late(1)
        self.assertEqual(len(self.watch.named("limiter_undone")), 1)

    def test_script_error_not_retried(self) -> None:
        """An undo Redis refuses (a failing script) is logged as an error, not retried."""
        self.undoing.add(_UNDO)
        self.connection.calls[0][0].errback(Failure(RedisError("ERR broken")))
        self.clock.advance(RETRY_EVERY * 3)
        self.assertEqual(len(self.connection.calls), 1)
        self.assertEqual(len(self.watch.named("limiter_undo_failed")), 1)

    def test_nothing_after_stop(self) -> None:
        """A stopped state sends no undo, and drops those waiting."""
        self.undoing.add(_UNDO)
        self._fail_unsent(0)
        self.undoing.stop()
        self.undoing.add(_UNDO)
        self.clock.advance(RETRY_EVERY * 3)
        self.assertEqual(len(self.connection.calls), 1)

    def test_waiting_bounded(self) -> None:
        """While Redis is away, at most a bounded number of undos wait: the oldest are
        dropped, with one warning."""
        self.patch(redis_undo, "_WAITING_MOST", 2)
        for index in range(3):
            self.undoing.add(attrs.evolve(_UNDO, what=f"slot {index}"))
            self._fail_unsent(index)
        self.clock.advance(RETRY_EVERY)
        self.assertEqual(len(self.connection.calls), 5)  # 3 first sent, then the newest 2
        self.assertEqual(len(self.watch.named("limiter_undo_dropped")), 1)
