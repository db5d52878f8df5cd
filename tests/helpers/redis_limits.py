"""Redis limit states for tests, connected to a test's own redis-server."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from runnergw.config.reader import parse_listen_address
from runnergw.config.redis import RedisSettings
from runnergw.limits.redis_connection import RedisConnection
from runnergw.limits.redis_parts import redis_connection
from runnergw.limits.redis_state import RedisLimitState
from tests.helpers.redis_server import RedisServer

__all__ = ["redis_settings", "connect", "shared_state"]


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
