"""The ``runners`` section's routes: one per runner, its filter chain and an Ollama terminal."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS

from runnergw.chain.route import Route, error_body_openai
from runnergw.chain.timing import ServerTiming
from runnergw.config.errors import ConfigError
from runnergw.config.runners import POLICY_FILTERS, RunnerSettings
from runnergw.filters.registry import FilterContext, build_chain
from runnergw.terminals.ollama import OllamaTerminal
from runnergw.upstream.pool import UpstreamPool

__all__ = ["build_runner_routes"]

_ROLE_FILTERS = ("role", "access")
"""What a runner's chain needs for the ``roles`` section to hold on it."""


def _runner_endpoint(reactor: Any, runner: RunnerSettings) -> IStreamClientEndpoint:
    """How to reach a runner: TCP (IPv4, IPv6 or a name), wrapped in TLS for ``https``."""
    endpoint: IStreamClientEndpoint
    if isIPAddress(runner.host):
        endpoint = TCP4ClientEndpoint(reactor, runner.host, runner.port,
                                      timeout=runner.connect_timeout)
    elif isIPv6Address(runner.host):
        endpoint = TCP6ClientEndpoint(reactor, runner.host, runner.port,
                                      timeout=runner.connect_timeout)
    else:
        endpoint = HostnameEndpoint(reactor, runner.host, runner.port,
                                    timeout=runner.connect_timeout)
    if runner.scheme == "https":
        trust = None
        if runner.ca_path:
            with open(runner.ca_path, "rb") as stream:
                trust = Certificate.loadPEM(stream.read())
        endpoint = wrapClientTLS(optionsForClientTLS(runner.host, trustRoot=trust), endpoint)
    return endpoint


def build_runner_routes(context: FilterContext, reactor: Any,
                        errors: list[ConfigError]) -> list[Route]:
    """A route per runner; problems (filters, CA bundles) are appended to ``errors``."""
    routes = []
    for runner in context.settings.runners:
        filters, problems = build_chain(runner.filters, attrs.evolve(context, route=runner))
        errors.extend(problems)
        if context.settings.roles and not problems:
            named = {getattr(step, "name", None) for step in filters}
            missing = [name for name in _ROLE_FILTERS if name not in named]
            if missing:
                errors.append(ConfigError(
                    runner.origins["filters"], f"{runner.yaml_path}.filters",
                    f"the roles section applies to every runner, but this chain lacks "
                    f"{' and '.join(missing)} (leave filters out for the default chain: "
                    f"{', '.join(POLICY_FILTERS)})"))
        try:
            endpoint = _runner_endpoint(reactor, runner)
        except OSError as e:
            errors.append(ConfigError(runner.origins["caPath"], f"{runner.yaml_path}.caPath",
                                      f"{runner.ca_path}: {e.strerror}"))
            continue
        pool = UpstreamPool(endpoint, reactor, name=runner.name,
                            max_idle=runner.max_connections)
        routes.append(Route(
            name=runner.name,
            prefix=runner.prefix_segments,
            filters=filters,
            terminal=OllamaTerminal(runner, pool, reactor),
            max_body_size=runner.max_body_size,
            api_error_bodies=(("/v1/", error_body_openai),),
            server_timing=ServerTiming(reactor) if context.settings.server.server_timing else None,
        ))
    return routes
