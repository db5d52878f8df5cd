"""Redis limit states for tests, connected to a test's own redis-server."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.trial.unittest import TestCase

from runnergw.config.reader import parse_listen_address
from runnergw.config.redis import RedisSettings
from runnergw.limits.redis_connection import RedisConnection
from runnergw.limits.redis_parts import redis_connection
from runnergw.limits.redis_state import RedisLimitState
from tests.helpers.killable_ollama import LogWatch
from tests.helpers.redis_server import RedisServer

__all__ = ["HoldingRelay", "RedisNodesTestCase", "connect", "redis_settings", "shared_state"]


def redis_settings(server: RedisServer, **changes: object) -> RedisSettings:
    """Settings reaching ``server`` (its socket when it has one)."""
    settings = RedisSettings(address=parse_listen_address(server.address),
                             unix_socket=server.unix_socket)
    fields = {"address": settings.address, "unix_socket": settings.unix_socket, **changes}
    return RedisSettings(**fields)  # type: ignore[arg-type]


def connect(test: TestCase, settings: RedisSettings, timeout: float = 2.0) -> RedisConnection:
    """A connection closed at the test's cleanup."""
    connection = redis_connection(settings, reactor, timeout)
    test.addCleanup(connection.close)
    return connection


def shared_state(test: TestCase, server: RedisServer, *, prefix: str = "test:",
                 slot_expiry: float = 30.0, timeout: float = 2.0,
                 **changes: object) -> RedisLimitState:
    """A Redis limit state on ``server`` (``timeout``: each call's deadline), stopped at the
    test's cleanup."""
    state = RedisLimitState(connect(test, redis_settings(server, **changes), timeout),
                            reactor, prefix, slot_expiry)
    test.addCleanup(state.stop)
    return state


class _Upstream(Protocol):
    """The relay's connection to Redis: Redis' replies go back to the client."""

    def __init__(self, relay: _Relay) -> None:
        self.relay = relay

    def dataReceived(self, data: bytes) -> None:
        if self.relay.deaf:
            return
        if self.relay.released and not self.relay.answered.called:
            self.relay.answered.callback(data)
        self.relay.transport.write(data)  # type: ignore[union-attr]

    def connectionLost(self, reason: Any = None) -> None:
        self.relay.transport.loseConnection()  # type: ignore[union-attr]


class _Relay(Protocol):
    """One client connection, relayed to Redis on a connection of its own."""

    def __init__(self, relays: HoldingRelay) -> None:
        self.relays = relays
        self.held = False
        self.released = False
        self.deaf = False
        """Redis' answers are lost."""
        self.kept = b""
        self.answered: Deferred[bytes] = Deferred()
        self.upstream: _Upstream | None = None

    def connectionMade(self) -> None:
        self.relays.open.append(self)
        self.deaf = self.relays.deaf
        self.transport.pauseProducing()  # type: ignore[union-attr]
        endpoint = TCP4ClientEndpoint(reactor, "127.0.0.1", self.relays.server.port)
        endpoint.connect(Factory.forProtocol(lambda: _Upstream(self))).addCallbacks(
            self._upstream_open, lambda _: self.transport.loseConnection())  # type: ignore

    def _upstream_open(self, upstream: _Upstream) -> None:
        self.upstream = upstream
        self.transport.resumeProducing()  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        if self.held:
            self.kept += data
        else:
            self.upstream.transport.write(data)  # type: ignore[union-attr]

    def release(self) -> Deferred[bytes]:
        self.held, self.released = False, True
        self.upstream.transport.write(self.kept)  # type: ignore[union-attr]
        return self.answered

    def connectionLost(self, reason: Any = None) -> None:
        if self.held or self.deaf:
            self.relays.ended_one()
        if not self.held and self.upstream is not None:
            self.upstream.transport.loseConnection()  # type: ignore[union-attr]


class HoldingRelay:
    """A relay in front of a redis-server: what clients send on the connections open when
    ``hold`` is called is kept back (a network path delivering it much later), even after
    the client gave the connection up, until ``release``; or Redis' answers on them are
    lost (``lose_answers``); later connections pass at once unless told otherwise."""

    def __init__(self, test: TestCase, server: RedisServer) -> None:
        self.server = server
        self.open: list[_Relay] = []
        self.deaf = False
        """Connections opened from now on lose Redis' answers."""
        self._ended = 0
        self._waiting: list[tuple[int, Deferred[None]]] = []
        listening = reactor.listenTCP(0, Factory.forProtocol(lambda: _Relay(self)),
                                      interface="127.0.0.1")
        self.address = f"127.0.0.1:{listening.getHost().port}"
        test.addCleanup(self._close)
        test.addCleanup(listening.stopListening)

    def hold(self) -> None:
        """Keep back what clients send on the connections open now."""
        for relay in self.open:
            relay.held = True

    def lose_answers(self, later_too: bool = False) -> None:
        """Lose Redis' answers on the connections open now (what is sent still runs), and
        with ``later_too`` on those opened until ``answer_again``."""
        for relay in self.open:
            relay.deaf = True
        self.deaf = later_too

    def answer_again(self) -> None:
        """Connections opened from now on get Redis' answers."""
        self.deaf = False

    def given_up(self, count: int = 1) -> Deferred[None]:
        """Fires once the client has ended ``count`` connections held back or losing
        answers."""
        ended: Deferred[None] = Deferred()
        self._waiting.append((count, ended))
        self.ended_one(0)
        return ended

    def ended_one(self, more: int = 1) -> None:
        self._ended += more
        due = [ended for count, ended in self._waiting if count <= self._ended]
        self._waiting = [(count, ended) for count, ended in self._waiting
                         if count > self._ended]
        for ended in due:
            ended.callback(None)

    def release(self) -> Deferred[bytes]:
        """Pass on what was kept back: fires with Redis' first answer to it."""
        held = [relay for relay in self.open if relay.held]
        return gatherResults([relay.release() for relay in held]).addCallback(b"".join)

    def _close(self) -> None:
        for relay in self.open:
            if relay.upstream is not None:
                relay.upstream.transport.loseConnection()  # type: ignore[union-attr]


class RedisNodesTestCase(TestCase):
    """A test with a redis-server of its own, nodes' limit states on it, and the gateway's
    log events watched (``self.watch``)."""

    timeout = 20
    day = "2026-12-05"

    def setUp(self) -> Deferred[None]:
        self.watch = LogWatch()
        self.addCleanup(self.watch.close)
        self.server = RedisServer(self)
        return self.server.start()

    def node(self, timeout: float = 2.0, relay: HoldingRelay | None = None,
             slot_expiry: float = 30.0) -> RedisLimitState:
        """A node's state (``relay``: reaching Redis through it)."""
        if relay is None:
            return shared_state(self, self.server, timeout=timeout, slot_expiry=slot_expiry)
        return shared_state(self, self.server, timeout=timeout, slot_expiry=slot_expiry,
                            address=parse_listen_address(relay.address))

    async def slots(self, state: RedisLimitState, subject: str = "alice") -> list[str]:
        """The slot ids the cluster counts for the subject (once what this node gave back
        is sent)."""
        state.give_backs.send()
        held = await state.connection.call("ZRANGE", state.key("slots", subject), 0, -1)
        return sorted(slot_id.decode() for slot_id in held)

    async def total(self, state: RedisLimitState, subject: str = "alice") -> int:
        """The subject's total of ``day`` in Redis (once what this node gave back is
        sent)."""
        state.give_backs.send()
        return int(await state.connection.call("HGET", state.day_key(self.day), subject) or 0)
