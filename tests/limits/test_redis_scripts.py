"""The Lua scripts: run by their SHA1, sent whole when Redis lacks them."""

from __future__ import annotations

import hashlib

from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from runnergw.limits.redis_connection import RedisError
from runnergw.limits.redis_scripts import TAKE_REQUEST, Script
from tests.helpers.redis_limits import connect, redis_settings
from tests.helpers.redis_server import RedisServer

__all__ = ["ScriptTests"]


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
        """A script Redis has never seen (or forgot: a restart, SCRIPT FLUSH) runs."""
        connection = connect(self, redis_settings(self.server))
        await connection.call("SCRIPT", "FLUSH")
        echo = Script("return ARGV[1] .. KEYS[1]")
        self.assertEqual(await echo.run(connection, ["k"], ["v"]), b"vk")
        self.assertEqual(await connection.call("SCRIPT", "EXISTS", echo.sha), [1])

    async def test_script_error(self) -> None:
        """A script that fails is an error, not a retry."""
        connection = connect(self, redis_settings(self.server))
        await self.assertFailure(Script("return redis.call('NOPE')").run(connection, [], []),
                                 RedisError)
