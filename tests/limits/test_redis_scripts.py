"""The Lua scripts: run by their SHA1, sent whole when Redis lacks them."""

from __future__ import annotations

import hashlib

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from runnergw.limits.redis_connection import RedisConnection, RedisError
from runnergw.limits.redis_scripts import (
    FREE_SLOT,
    LEASE_TOKENS,
    REFRESH_SLOTS,
    TAKE_REQUEST,
    TAKE_SLOT,
    UNDO_LEASE,
    Script,
)
from tests.helpers.redis_limits import connect, redis_settings
from tests.helpers.redis_server import RedisServer

__all__ = ["ScriptTests", "UndoScriptTests"]


class ScriptTests(TestCase):
    """EVALSHA, and EVAL once after NOSCRIPT."""

    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        return self.server.start()

    def test_sha(self) -> None:
        """A script is named by the SHA1 of its source, as Redis names it."""
        self.assertEqual(TAKE_REQUEST.sha,
                         hashlib.sha1(TAKE_REQUEST.source.encode()).hexdigest())

    async def test_unknown_to_redis(self) -> None:
        """A script is sent whole the first time on a connection; one Redis forgot since
        (a restart, SCRIPT FLUSH) is sent whole again."""
        connection = connect(self, redis_settings(self.server))
        echo = Script("return ARGV[1] .. KEYS[1]")
        self.assertEqual(await echo.run(connection, ["k"], ["v"]), b"vk")
        self.assertEqual(await connection.call("SCRIPT", "EXISTS", echo.sha), [1])
        await connection.call("SCRIPT", "FLUSH")
        self.assertEqual(await echo.run(connection, ["k"], ["w"]), b"wk")
        self.assertEqual(await connection.call("SCRIPT", "EXISTS", echo.sha), [1])

    async def test_script_error(self) -> None:
        """A script that fails is an error, not a retry."""
        connection = connect(self, redis_settings(self.server))
        await self.assertFailure(Script("return redis.call('NOPE')").run(connection, [], []),
                                 RedisError)


_DAY, _LEASE, _SLOTS, _GONE = "t:day", "t:lease:n:1", "t:slots", "t:gone:n:1"


class UndoScriptTests(TestCase):
    """Undoing a slot take or a lease by its name, in either order with the call."""

    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        return self.server.start()

    def _lease(self, connection: RedisConnection, want: int) -> Deferred[list[int]]:
        return LEASE_TOKENS.run(connection, [_DAY, _LEASE],
                                ["alice", 1000, want, 1, 3600, 60_000])

    async def test_lease_undone_once(self) -> None:
        """Undoing a lease gives back what it granted; undoing it again gives back
        nothing more."""
        connection = connect(self, redis_settings(self.server))
        await connection.call("HSET", _DAY, "alice", 4)
        self.assertEqual(await self._lease(connection, 300), [300, 696])
        undo = [_DAY, _LEASE], ["alice", 3600, 60_000]
        self.assertEqual(await UNDO_LEASE.run(connection, *undo), 300)
        self.assertEqual(await UNDO_LEASE.run(connection, *undo), 0)
        self.assertEqual(await connection.call("HGET", _DAY, "alice"), b"4")

    async def test_lease_after_its_undo_grants_nothing(self) -> None:
        """A lease reaching Redis after its undo (sent on another connection) grants
        nothing."""
        connection = connect(self, redis_settings(self.server))
        await UNDO_LEASE.run(connection, [_DAY, _LEASE], ["alice", 3600, 60_000])
        self.assertEqual(await self._lease(connection, 300), [0, 1000])
        self.assertIsNone(await connection.call("HGET", _DAY, "alice"))

    async def test_slot_take_after_its_undo_takes_nothing(self) -> None:
        """A slot take reaching Redis after its undo takes no place."""
        connection = connect(self, redis_settings(self.server))
        await FREE_SLOT.run(connection, [_SLOTS, _GONE], ["n:1", 60_000])
        self.assertEqual(await TAKE_SLOT.run(connection, [_SLOTS, _GONE], [2, "n:1", "30"]), 0)
        self.assertEqual(await connection.call("ZCARD", _SLOTS), 0)

    async def test_refresh_after_release_counts_nothing(self) -> None:
        """A refresh that reaches Redis after the slot was released does not count it
        again; a slot held and swept is counted again."""
        connection = connect(self, redis_settings(self.server))
        self.assertEqual(await TAKE_SLOT.run(connection, [_SLOTS, _GONE], [2, "n:1", "30"]), 1)
        self.assertEqual(await FREE_SLOT.run(connection, [_SLOTS, _GONE], ["n:1", 60_000]), 1)
        keys = [_SLOTS, _GONE, _SLOTS, "t:gone:n:2"]
        self.assertEqual(await REFRESH_SLOTS.run(connection, keys, ["30", "n:1", "n:2"]), 1)
        self.assertEqual(await connection.call("ZRANGE", _SLOTS, 0, -1), [b"n:2"])
