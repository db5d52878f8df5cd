"""The Redis connection: password, database, deadlines, reconnecting."""

from __future__ import annotations

import os

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from runnergw.limits.redis_connection import RedisConnection, RedisError, RedisUnavailable
from tests.helpers.certs import make_ca
from tests.helpers.killable_ollama import LogWatch
from tests.helpers.redis_limits import connect, redis_settings
from tests.helpers.redis_server import RedisServer

__all__ = ["BeforeCallTests", "DeadlineTests", "HandshakeTests", "PasswordTests",
           "ReconnectTests", "StallTests", "TlsTests"]

_PASSWORD = "s3cret-redis-word"


class PasswordTests(TestCase):
    """AUTH and SELECT as the settings say, the password never shown."""

    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self, password=_PASSWORD)
        return self.server.start()

    def _password_file(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(text + "\n")
        return path

    async def test_password_from_file(self) -> None:
        """A password read from ``passwordFile`` opens the connection."""
        connection = connect(self, redis_settings(
            self.server, password_file=self._password_file(_PASSWORD)))
        self.assertEqual(await connection.call("PING"), b"PONG")

    async def test_password_from_environment(self) -> None:
        """A password read from the variable ``passwordEnv`` names opens the connection."""
        os.environ["TEST_REDIS_PASSWORD"] = _PASSWORD
        self.addCleanup(os.environ.pop, "TEST_REDIS_PASSWORD")
        connection = connect(self, redis_settings(self.server,
                                                  password_env="TEST_REDIS_PASSWORD"))
        self.assertEqual(await connection.call("PING"), b"PONG")

    async def test_wrong_password_not_shown(self) -> None:
        """A wrong password fails the call with Redis' reason, not the password."""
        connection = connect(self, redis_settings(
            self.server, password_file=self._password_file("not-the-word")))
        failure = await self.assertFailure(connection.call("PING"), RedisUnavailable)
        self.assertIn("WRONGPASS", str(failure))
        self.assertNotIn("not-the-word", str(failure))

    async def test_database_selected(self) -> None:
        """Keys are written in the ``database`` configured."""
        path = self._password_file(_PASSWORD)
        third = connect(self, redis_settings(self.server, password_file=path, database=3))
        first = connect(self, redis_settings(self.server, password_file=path))
        await third.call("SET", "marker", "3")
        self.assertIsNone(await first.call("GET", "marker"))
        self.assertEqual(await third.call("GET", "marker"), b"3")

    async def test_error_reply(self) -> None:
        """An error reply fails that call only; the next one is answered."""
        connection = connect(self, redis_settings(
            self.server, password_file=self._password_file(_PASSWORD)))
        await self.assertFailure(connection.call("NOSUCHCOMMAND"), RedisError)
        self.assertEqual(await connection.call("PING"), b"PONG")


class _Silent(Protocol):
    """Accepts commands and never answers."""


class DeadlineTests(TestCase):
    """A Redis that does not answer fails each call at its deadline."""

    async def test_no_answer_within_deadline(self) -> None:
        """A call unanswered within the timeout fails with ``RedisUnavailable``."""
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(_Silent))
        self.addCleanup(port.stopListening)
        server = RedisServer(self)
        server.port = port.getHost().port
        connection = connect(self, redis_settings(server), timeout=0.1)
        failure = await self.assertFailure(connection.call("PING"), RedisUnavailable)
        self.assertIn("0.1 s", str(failure))

    async def test_nobody_listening(self) -> None:
        """Nothing listening: the call fails with ``RedisUnavailable``."""
        server = RedisServer(self)
        connection = connect(self, redis_settings(server), timeout=1)
        await self.assertFailure(connection.call("PING"), RedisUnavailable)


class BeforeCallTests(TestCase):
    """What waits to go with the next call (given back by requests) goes before it."""

    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        return self.server.start()

    async def test_sent_first(self) -> None:
        """``before_call`` runs before each call and may call itself: its call is sent
        first, so the call after it sees what it wrote."""
        connection = connect(self, redis_settings(self.server))
        waiting = [("SET", "given", "back")]

        def send_waiting() -> None:
            while waiting:
                connection.call(*waiting.pop())

        connection.before_call = send_waiting
        self.assertEqual(await connection.call("GET", "given"), b"back")


class ReconnectTests(TestCase):
    """Redis restarted: the connection is made again without a restart of the gateway."""

    timeout = 20

    async def test_after_restart(self) -> None:
        """Calls fail while Redis is down and succeed once it is back on the same port."""
        server = RedisServer(self)
        await server.start()
        connection = connect(self, redis_settings(server), timeout=1)
        self.assertEqual(await connection.call("PING"), b"PONG")
        await server.kill()
        await self.assertFailure(connection.call("PING"), RedisUnavailable)
        await server.start()
        answer = None
        while answer is None:
            try:
                answer = await connection.call("PING")
            except RedisUnavailable:
                await deferLater(reactor, 0.05, lambda: None)  # the backoff
        self.assertEqual(answer, b"PONG")


class TlsTests(TestCase):
    """TLS to Redis, its certificate checked against ``tls.caPath``."""

    timeout = 20

    async def test_certificate_checked(self) -> None:
        """A Redis serving TLS with a certificate of the configured CA is reached; with
        another CA's bundle the call fails."""
        authority = make_ca(self.mktemp())
        server = RedisServer(self, tls=authority.issue(self.mktemp(), "redis"))
        await server.start()
        trusted = connect(self, redis_settings(server, tls=True,
                                               tls_ca_path=os.path.abspath(authority.ca_path)))
        self.assertEqual(await trusted.call("PING"), b"PONG")
        stranger = make_ca(self.mktemp())
        untrusted = connect(self, redis_settings(server, tls=True,
                                                 tls_ca_path=os.path.abspath(stranger.ca_path)))
        await self.assertFailure(untrusted.call("PING"), RedisUnavailable)


async def _answered(connection: RedisConnection) -> bytes:
    """PING until Redis answers (each failure waits out the reconnect backoff)."""
    while True:
        try:
            return await connection.call("PING")
        except RedisUnavailable:
            await deferLater(reactor, 0.05, lambda: None)


class StallTests(TestCase):
    """A Redis that stalls (a frozen process): calls fail at their deadline, and what came of
    each, once Redis goes on or the connection is given up, is told to the caller."""

    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        return self.server.start()

    async def test_late_reply_told(self) -> None:
        """A reply that comes after the deadline reaches the call's ``late`` (Redis did run
        it), and the replies behind it stay in order."""
        connection = connect(self, redis_settings(self.server), timeout=0.2)
        self.assertEqual(await connection.call("PING"), b"PONG")
        late: Deferred[object] = Deferred()
        self.server.pause()
        await self.assertFailure(connection.call("INCR", "n", late=late.callback),
                                 RedisUnavailable)
        self.server.resume()
        self.assertEqual(await late, 1)
        self.assertEqual(await connection.call("GET", "n"), b"1")

    async def test_stuck_connection_given_up(self) -> None:
        """A first call to a frozen Redis (the connection opens, nothing answers) fails at
        its deadline; the connection is given up after ``stuck_after`` without any other
        call, ``late`` learns the reply will never come, and calls succeed once Redis goes
        on."""
        watch = LogWatch()
        self.addCleanup(watch.close)
        connection = connect(self, redis_settings(self.server), timeout=0.2)
        late: Deferred[list[Failure]] = Deferred()
        self.server.pause()
        await self.assertFailure(connection.call("PING", late=lambda told: late.callback([told])),
                                 RedisUnavailable)
        (outcome,) = await late
        self.assertTrue(outcome.check(RedisUnavailable))
        await watch.wait("redis_connection_given_up")
        self.server.resume()
        self.assertEqual(await _answered(connection), b"PONG")


class _Hello(Protocol):
    """Accepts a connection, reads AUTH, never answers; tells when the client gives up."""

    def __init__(self, gone: Deferred[None]) -> None:
        self.gone = gone

    def connectionLost(self, reason: object = None) -> None:
        self.gone.callback(None)


class HandshakeTests(TestCase):
    """Opening the connection (AUTH) has a deadline: a listener that never answers (a proxy
    whose Redis is down, a frozen host) does not block the connection for good."""

    timeout = 20

    async def test_hanging_handshake_abandoned(self) -> None:
        """A handshake left unanswered is given up; once a real Redis serves that port,
        calls succeed."""
        gone: Deferred[None] = Deferred()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            Factory.forProtocol(lambda: _Hello(gone)))
        server = RedisServer(self, password=_PASSWORD)
        server.port = port.getHost().port
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as stream:
            stream.write(_PASSWORD)
        connection = connect(self, redis_settings(server, password_file=path), timeout=0.25)
        await self.assertFailure(connection.call("PING"), RedisUnavailable)
        await port.stopListening()
        await gone
        await server.start()
        self.assertEqual(await _answered(connection), b"PONG")
