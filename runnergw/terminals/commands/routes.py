"""The ``pipelines`` section's routes: ``POST /<endpoint>/`` per model descriptor, each with
its own chain and a command terminal."""

from __future__ import annotations

import shutil
from typing import Any

import attrs
from twisted.internet.task import Cooperator

from runnergw.chain.route import Route, error_body_detail
from runnergw.config.errors import ConfigError
from runnergw.config.filters import filter_names
from runnergw.config.pipelines import ModelSettings
from runnergw.config.settings import Settings
from runnergw.filters.registry import FilterContext, build_chain, filter_class
from runnergw.jobs.parts import JobParts
from runnergw.models.loading import load_models
from runnergw.models.types import ModelDescriptor
from runnergw.terminals.commands.terminal import CommandTerminal

__all__ = ["PipelineRoute", "build_pipeline_routes", "load_descriptors"]


_MULTIPART_SLACK = 1 << 20
"""Room for the text parts and multipart framing beside the uploads."""


@attrs.frozen
class PipelineRoute:
    """What a filter's ``from_settings`` learns about a pipeline route."""

    model: ModelDescriptor
    settings: ModelSettings

    @property
    def allowed_roles(self) -> tuple[str, ...] | None:
        """The descriptor's ``allowed_roles`` (None: any role)."""
        return self.model.allowed_roles


def load_descriptors(settings: Settings, errors: list[ConfigError]) -> list[ModelDescriptor]:
    """The model descriptors of the enabled pipelines; problems are appended to ``errors``."""
    if not settings.pipelines.enabled:
        return []
    models, problems = load_models(settings.pipelines.models_path,
                                   ffprobe_available=shutil.which("ffprobe") is not None)
    errors.extend(problems)
    return models


def _filter_name(name: str) -> str:
    """The name a filter goes by, however settings spell it (a built-in by its dotted path)."""
    try:
        return str(getattr(filter_class(name), "name", name))
    except ValueError:
        return name  # reported where the chain is built


def _check_chain(settings: Settings, models: list[ModelDescriptor],
                 errors: list[ConfigError]) -> None:
    """The SaaS token check, the role check and the plan's media limits are the contract of
    every model: a settings change must not drop them silently (custom filters may be added
    around them)."""
    pipelines = settings.pipelines
    names = [_filter_name(name) for name in filter_names(pipelines.filters)]

    def problem(message: str) -> None:
        origin = pipelines.filters[0].origin if pipelines.filters else pipelines.origin
        errors.append(ConfigError(origin, "pipelines.filters", message))

    if "websaas" not in names:
        problem("must include websaas: without it anyone can run the models")
    elif "role" not in names or names.index("role") < names.index("websaas"):
        problem("must include role after websaas: it enforces allowed_roles")
    limited = [m.endpoint for m in models if m.role_limits]
    if limited and "mediaLimits" not in names:
        problem(f"must include mediaLimits after role: {', '.join(limited)} "
                "set role_limits, which it enforces")


def build_pipeline_routes(context: FilterContext, reactor: Any,
                          errors: list[ConfigError]) -> list[Route]:
    """Load every descriptor and build its route; problems are appended to ``errors``."""
    settings = context.settings
    pipelines = settings.pipelines
    if not pipelines.enabled:
        return []
    models = load_descriptors(settings, errors)
    _check_chain(settings, models, errors)
    if context.signer is None:
        return []
    jobs = context.jobs
    if jobs is None:
        jobs = JobParts(reactor, pipelines.jobs_path, shutil.which("ffprobe"),
                        pipelines.environment, pipelines.job_niceness)
    cooperator = Cooperator(scheduler=lambda step: reactor.callLater(0, step))
    routes = []
    reported: set[tuple[Any, str, str]] = set()
    for model in models:
        model_settings = pipelines.model(model.endpoint)
        route_context = attrs.evolve(context, jobs=jobs,
                                     route=PipelineRoute(model, model_settings))
        filters, problems = build_chain(pipelines.filters, route_context)
        # Every model is built from the same filters list: its problems are reported once.
        errors.extend(problem for problem in problems
                      if (problem.origin, problem.path, problem.message) not in reported)
        reported.update((p.origin, p.path, p.message) for p in problems)
        uploads = [f.max_size for f in model.upload_fields]
        limit = (sum(uploads) + _MULTIPART_SLACK if all(u is not None for u in uploads)
                 else pipelines.max_request_size)
        routes.append(Route(
            name=model.endpoint,
            prefix=(model.endpoint,),
            filters=filters,
            terminal=CommandTerminal(model, model_settings, jobs, signer=context.signer,
                                     cooperator=cooperator,
                                     max_upload=pipelines.max_request_size),
            error_body=error_body_detail,
            max_body_size=limit,
        ))
    return routes
