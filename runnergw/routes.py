"""The one place routes are assembled: each terminal kind builds its own from its section."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from runnergw.chain.route import Route, Router, error_body_detail, error_body_ollama
from runnergw.chain.timing import ServerTiming
from runnergw.config.errors import ConfigError, ConfigErrors
from runnergw.config.settings import Settings
from runnergw.filters.audit import AuditFilter
from runnergw.filters.registry import FilterContext
from runnergw.kept import KeptParts
from runnergw.startup import GatewayParts
from runnergw.terminals.commands.routes import build_pipeline_routes
from runnergw.terminals.ollama_routes import build_runner_routes

__all__ = ["ROUTE_KINDS", "build_router"]

RouteKind = Callable[[FilterContext, Any, list[ConfigError]], list[Route]]
"""``kind(context, reactor, errors)``: the routes of one terminal kind, from its settings
section; problems are appended to ``errors``."""

ROUTE_KINDS: Sequence[RouteKind] = (build_runner_routes, build_pipeline_routes)
"""Runner prefixes (``runners``), then command models (``pipelines``)."""


def build_router(settings: Settings, parts: GatewayParts, reactor: Any,
                 kinds: Sequence[RouteKind] = ROUTE_KINDS,
                 kept: KeptParts | None = None) -> Router:
    """Every route of every terminal kind, and the fallback that answers 404.

    ``kept`` are the parts every generation of routes shares (limits, job launcher, runner
    hosts: the service owns them); when none are given, unstarted ones are made for these
    routes alone (to check the settings).

    Raises:
        ConfigErrors: every problem (filters and their options, CA bundles, descriptors,
            two routes on one prefix).
    """
    if kept is None:
        kept = KeptParts.from_settings(settings, reactor)
    context = FilterContext(settings=settings, clock=reactor, audit_log=parts.audit_log,
                            verifier=parts.verifier, saas_verifier=parts.saas_verifier,
                            signer=parts.signer, limits=kept.limits, jobs=kept.jobs,
                            hosts=kept.hosts)
    errors: list[ConfigError] = []
    routes: list[Route] = []
    taken: dict[tuple[str, ...], str] = {}
    for kind in kinds:
        for route in kind(context, reactor, errors):
            if route.prefix in taken:
                errors.append(ConfigError(settings.pipelines.origin, "pipelines",
                                          f'"{route.name}" serves /{"/".join(route.prefix)}, '
                                          f'which is already the prefix of {taken[route.prefix]}'))
                continue
            taken[route.prefix] = route.name
            routes.append(route)
    if errors:
        raise ConfigErrors(errors)
    # A node that only serves pipelines answers unknown paths as the FastAPI node did.
    only_pipelines = not settings.runners and settings.pipelines.enabled
    # Where runners are served, their 404s carry Server-Timing as their routes' answers do.
    timed = settings.runners and settings.server.server_timing
    fallback = Route(name="", prefix=(), filters=(AuditFilter(parts.audit_log),), terminal=None,
                     error_body=error_body_detail if only_pipelines else error_body_ollama,
                     server_timing=ServerTiming(reactor) if timed else None)
    return Router(routes, fallback)
