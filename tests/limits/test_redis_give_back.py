"""What requests give back as they end: gathered, sent in one call before the next check."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.limits.redis_connection import RedisError, RedisNotSent, RedisUnavailable
from runnergw.limits.redis_give_back import LINGER, GiveBacks
from runnergw.limits.redis_scripts import FREE_SLOT, GIVE_BACK, TAKE_SLOT
from runnergw.limits.redis_undo import Undoing
from tests.helpers.redis_limits import connect, redis_settings
from tests.helpers.redis_server import RedisServer

__all__ = ["GatheringTests", "GiveBackScriptTests"]


class _Connection:
    """Records each call; the test answers or fails it."""

    connected = True

    def __init__(self) -> None:
        self.scripts: set[str] = set()
        self.calls: list[tuple[tuple[Any, ...], Deferred[Any]]] = []

    def call(self, *args: Any, late: Any = None) -> Deferred[Any]:
        reply: Deferred[Any] = Deferred()
        self.calls.append((args, reply))
        return reply


class GatheringTests(SynchronousTestCase):
    """Slots and counts given back wait, then go in one call."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.connection = _Connection()
        self.undoing = Undoing(self.connection, self.clock)  # type: ignore[arg-type]
        self.addCleanup(self.undoing.stop)
        self.give_backs = GiveBacks(self.connection, self.clock,  # type: ignore[arg-type]
                                    self.undoing, 86400, 60_000)

    def test_one_call_for_all(self) -> None:
        """Two slots and a count given back are one ``GIVE_BACK`` call: the slots' keys
        and ids first, then the day and the subject's tokens."""
        self.give_backs.free_slot("p:slots:a", "p:gone:n:1", "n:1")
        self.give_backs.free_slot("p:slots:b", "p:gone:n:2", "n:2")
        self.give_backs.count("p:day:2026-12-05", "alice", -40)
        self.assertEqual(self.connection.calls, [])
        self.give_backs.send()
        [(args, _)] = self.connection.calls
        self.assertEqual(args, ("EVAL", GIVE_BACK.source, 5, "p:slots:a", "p:gone:n:1",
                                "p:slots:b", "p:gone:n:2", "p:day:2026-12-05", 60_000, 86400,
                                2, "n:1", "n:2", "alice", -40))

    def test_sent_within_the_linger(self) -> None:
        """With no check to go with, what was given back is sent after ``LINGER``."""
        self.give_backs.free_slot("p:slots:a", "p:gone:n:1", "n:1")
        self.clock.advance(LINGER / 2)
        self.assertEqual(self.connection.calls, [])
        self.clock.advance(LINGER / 2)
        self.assertEqual(len(self.connection.calls), 1)

    def test_nothing_to_send(self) -> None:
        """Sending with nothing given back makes no call and leaves no timer."""
        self.give_backs.send()
        self.assertEqual((self.connection.calls, self.clock.getDelayedCalls()), ([], []))

    def test_bounded(self) -> None:
        """Under a flood of endings a call carries at most 256 give-backs: the 256th
        sends them at once."""
        for index in range(256):
            self.give_backs.free_slot("p:slots:a", f"p:gone:n:{index}", f"n:{index}")
        self.assertEqual(len(self.connection.calls), 1)
        self.assertEqual(self.clock.getDelayedCalls(), [])

    def test_counts_answered(self) -> None:
        """Each count's Deferred fires once the call is answered."""
        counted = self.give_backs.count("p:day:d", "alice", 5)
        self.give_backs.send()
        self.connection.calls[0][1].callback(0)
        self.assertIsNone(self.successResultOf(counted))

    def test_counts_fail_as_the_call(self) -> None:
        """A call never sent fails each count as never sent (its caller counts it
        elsewhere)."""
        counted = self.give_backs.count("p:day:d", "alice", 5)
        self.give_backs.send()
        self.connection.calls[0][1].errback(Failure(RedisNotSent("not connected")))
        self.failureResultOf(counted, RedisNotSent)

    def test_slots_freed_again(self) -> None:
        """Slots of a call Redis did not answer are freed again, one by one, until Redis
        answers (freeing twice does nothing more)."""
        self.give_backs.free_slot("p:slots:a", "p:gone:n:1", "n:1")
        self.give_backs.send()
        self.connection.calls[0][1].errback(Failure(RedisUnavailable("no answer")))
        [(args, _)] = self.connection.calls[1:]
        self.assertEqual(args, ("EVAL", FREE_SLOT.source, 2, "p:slots:a", "p:gone:n:1",
                                "n:1", 60_000))

    def test_refused_logged(self) -> None:
        """A script error is logged, not retried; the counts fail with it."""
        counted = self.give_backs.count("p:day:d", "alice", 5)
        self.give_backs.free_slot("p:slots:a", "p:gone:n:1", "n:1")
        self.give_backs.send()
        self.connection.calls[0][1].errback(Failure(RedisError("ERR broken")))
        self.failureResultOf(counted, RedisError)
        self.assertEqual(len(self.connection.calls), 1)
        self.assertEqual(len(self.flushLoggedErrors()), 0)


class GiveBackScriptTests(TestCase):
    """``GIVE_BACK`` in a real Redis."""

    timeout = 20

    async def setUp(self) -> None:
        self.server = RedisServer(self)
        await self.server.start()
        self.connection = connect(self, redis_settings(self.server))

    async def give_back(self, *args: Any) -> Any:
        return await self.connection.call("EVAL", GIVE_BACK.source, *args)

    async def test_slots_freed_and_tokens_counted(self) -> None:
        """Slots are freed (their markers set) and each subject's tokens counted, never
        below zero; the reply is the slots that were held."""
        await TAKE_SLOT.run(self.connection, ["t:slots", "t:gone:1"], [2, "1", 30])
        await self.connection.call("HSET", "t:day", "alice", 100, "bob", 10)
        freed = await self.give_back(6, "t:slots", "t:gone:1", "t:slots", "t:gone:2",
                                     "t:day", "t:day", 60_000, 86400, 2, "1", "2",
                                     "alice", -40, "bob", -30)
        self.assertEqual(freed, 1)
        self.assertEqual(await self.connection.call("ZCARD", "t:slots"), 0)
        self.assertEqual(await self.connection.call("HMGET", "t:day", "alice", "bob"),
                         [b"60", b"0"])
        self.assertLessEqual(await self.connection.call("TTL", "t:day"), 86400)

    async def test_late_take_does_nothing(self) -> None:
        """A take of a slot given back already (it reached Redis late) takes nothing."""
        await self.give_back(2, "t:slots", "t:gone:1", 60_000, 86400, 1, "1")
        self.assertEqual(await TAKE_SLOT.run(self.connection, ["t:slots", "t:gone:1"],
                                             [2, "1", 30]), 0)
