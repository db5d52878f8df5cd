"""Every runner host the gateway talks to, made in one place and kept by their ``HostKey``,
so that settings read again can keep the hosts that stay (their connections, requests under
way and health) and close only those no runner names any more."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS

from runnergw.config.runner_pool import RunnerHost
from runnergw.config.runners import RunnerSettings
from runnergw.upstream.host import HostKey, UpstreamHost
from runnergw.upstream.pool import UpstreamPool

__all__ = ["UpstreamHosts", "host_endpoint", "host_key"]


def host_key(runner: RunnerSettings, address: RunnerHost) -> HostKey:
    """The key of one of ``runner``'s hosts."""
    return HostKey(scheme=runner.scheme, host=address.host, port=address.port,
                   ca_path=runner.ca_path, connect_timeout=runner.connect_timeout,
                   max_connections=runner.max_connections, pool=runner.pool)


def host_endpoint(reactor: Any, key: HostKey) -> IStreamClientEndpoint:
    """How to reach a host: TCP (IPv4, IPv6 or a name), wrapped in TLS for ``https``.

    Raises:
        OSError: the CA bundle cannot be read.
    """
    endpoint: IStreamClientEndpoint
    if isIPAddress(key.host):
        endpoint = TCP4ClientEndpoint(reactor, key.host, key.port, timeout=key.connect_timeout)
    elif isIPv6Address(key.host):
        endpoint = TCP6ClientEndpoint(reactor, key.host, key.port, timeout=key.connect_timeout)
    else:
        endpoint = HostnameEndpoint(reactor, key.host, key.port, timeout=key.connect_timeout)
    if key.scheme == "https":
        trust = None
        if key.ca_path:
            with open(key.ca_path, "rb") as stream:
                trust = Certificate.loadPEM(stream.read())
        endpoint = wrapClientTLS(optionsForClientTLS(key.host, trustRoot=trust), endpoint)
    return endpoint


class UpstreamHosts:
    """The hosts of every runner, by key."""

    def __init__(self, reactor: Any) -> None:
        self.reactor = reactor
        self._hosts: dict[HostKey, UpstreamHost] = {}

    def get_or_create(self, runner: RunnerSettings, address: RunnerHost) -> UpstreamHost:
        """The host ``address`` of ``runner``: the one already made for its key, else a new
        one (with no connection yet, nothing scheduled).

        Raises:
            OSError: the runner's CA bundle cannot be read.
        """
        key = host_key(runner, address)
        host = self._hosts.get(key)
        if host is None:
            label = runner.name if len(runner.hosts) == 1 else f"{runner.name} {key.netloc}"
            pool = UpstreamPool(host_endpoint(self.reactor, key), self.reactor, name=label,
                                max_idle=key.max_connections)
            host = self._hosts[key] = UpstreamHost(key, pool, self.reactor, runner.name)
        return host

    def keys(self) -> frozenset[HostKey]:
        """The keys of every host kept."""
        return frozenset(self._hosts)

    def retain(self, keys: Iterable[HostKey]) -> Deferred[Any]:
        """Keep the hosts of ``keys``; close and forget the others (their probes, polls and
        connections, streams under way on them included). Fires once they are closed."""
        keep = frozenset(keys)
        gone = [key for key in self._hosts if key not in keep]
        return gatherResults([self._hosts.pop(key).close() for key in gone])

    def close(self) -> Deferred[Any]:
        """Close every host."""
        return self.retain(())
