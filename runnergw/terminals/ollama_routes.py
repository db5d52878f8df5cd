"""The ``runners`` section's routes: one per runner, its filter chain and an Ollama terminal."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import attrs

from runnergw.chain.route import Route, error_body_openai
from runnergw.chain.timing import ServerTiming
from runnergw.config.errors import ConfigError
from runnergw.config.runners import POLICY_FILTERS
from runnergw.filters.registry import FilterContext, build_chain
from runnergw.terminals.ollama import OllamaTerminal
from runnergw.upstream.balancer import HostBalancer
from runnergw.upstream.host import HostKey
from runnergw.upstream.registry import UpstreamHosts

__all__ = ["build_runner_routes", "runner_host_keys"]

_ROLE_FILTERS = ("role", "access")
"""What a runner's chain needs for the ``roles`` section to hold on it."""


def build_runner_routes(context: FilterContext, reactor: Any, errors: list[ConfigError],
                        hosts: UpstreamHosts | None = None) -> list[Route]:
    """A route per runner; problems (filters, CA bundles) are appended to ``errors``.

    The runners' hosts come from ``hosts``, else from ``context.hosts`` (the registry the
    service keeps across reloads), else a new registry: routes built again
    with the same registry share the hosts that stay, with their connections and health.
    """
    if hosts is None:
        hosts = context.hosts
    registry = hosts if hosts is not None else UpstreamHosts(reactor)
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
            members = [registry.get_or_create(runner, address) for address in runner.hosts]
        except OSError as e:
            errors.append(ConfigError(runner.origins["caPath"], f"{runner.yaml_path}.caPath",
                                      f"{runner.ca_path}: {e.strerror}"))
            continue
        routes.append(Route(
            name=runner.name,
            prefix=runner.prefix_segments,
            filters=filters,
            terminal=OllamaTerminal(runner, HostBalancer(runner.name, members, runner.pool),
                                    reactor),
            max_body_size=runner.max_body_size,
            api_error_bodies=(("/v1/", error_body_openai),),
            server_timing=ServerTiming(reactor) if context.settings.server.server_timing else None,
        ))
    return routes


def runner_host_keys(routes: Iterable[Route]) -> frozenset[HostKey]:
    """The keys of every host the runner routes among ``routes`` use: what
    ``UpstreamHosts.retain`` keeps once these routes are the ones served."""
    return frozenset(host.key for route in routes if isinstance(route.terminal, OllamaTerminal)
                     for host in route.terminal.hosts.hosts)
