"""The Redis limit state as the settings describe it: endpoint, connection, state and its
degraded modes."""

from __future__ import annotations

from typing import Any

from twisted.internet.endpoints import HostnameEndpoint, UNIXClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS

from runnergw.config.limits_backend import LimitsSettings
from runnergw.config.redis import RedisSettings
from runnergw.limits.redis_connection import RedisConnection
from runnergw.limits.redis_degraded import DegradableLimitState
from runnergw.limits.redis_state import RedisLimitState

__all__ = ["redis_connection", "redis_limit_state"]


def _endpoint(settings: RedisSettings, reactor: Any, timeout: float) -> IStreamClientEndpoint:
    if settings.unix_socket:
        return UNIXClientEndpoint(reactor, settings.unix_socket, timeout=max(1, timeout))
    address = settings.address
    endpoint: IStreamClientEndpoint = HostnameEndpoint(reactor, address.host, address.port,
                                                       timeout=max(1, timeout))
    if settings.tls:
        with open(settings.tls_ca_path, "rb") as stream:
            authority = Certificate.loadPEM(stream.read())
        endpoint = wrapClientTLS(optionsForClientTLS(address.host, trustRoot=authority),
                                 endpoint)
    return endpoint


def redis_connection(settings: RedisSettings, reactor: Any, timeout: float) -> RedisConnection:
    """A connection (made at the first call) with ``timeout`` as each call's deadline."""
    return RedisConnection(_endpoint(settings, reactor, timeout), reactor, timeout,
                           password=settings.password, database=settings.database)


def redis_limit_state(limits: LimitsSettings, settings: RedisSettings,
                      reactor: Any) -> DegradableLimitState:
    """The shared state, with what each limit does while Redis is away."""
    connection = redis_connection(settings, reactor, limits.redis_timeout)
    shared = RedisLimitState(connection, reactor, settings.key_prefix, limits.slot_expiry)
    return DegradableLimitState(shared, limits, reactor, settings.describe())
