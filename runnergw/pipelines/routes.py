"""A route per model descriptor: ``POST /<endpoint>/``, its own chain, a command terminal."""

from __future__ import annotations

import shutil
from typing import Any

import attrs
from twisted.internet.task import Cooperator

from runnergw.config.errors import ConfigError, Origin
from runnergw.config.pipelines import ModelSettings
from runnergw.config.settings import Settings
from runnergw.filters.registry import FilterContext, build_filter
from runnergw.chain.route import Route, error_body_detail
from runnergw.pipelines.descriptor import ModelDescriptor, load_models
from runnergw.terminals.commands import CommandTerminal, PipelineContext

__all__ = ["PipelineRoute", "build_pipeline_routes", "load_descriptors"]


_MULTIPART_SLACK = 1 << 20
"""Room for the text parts and multipart framing beside the uploads."""


@attrs.frozen
class PipelineRoute:
    """What a filter factory learns about a pipeline route."""

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
    for problem in problems:
        errors.append(ConfigError(Origin(problem.path, problem.line, problem.column), "",
                                  problem.message))
    return models


def build_pipeline_routes(
    settings: Settings, context: FilterContext, parts: Any, reactor: Any,
    errors: list[ConfigError],
) -> list[Route]:
    """Load every descriptor and build its route; problems are appended to ``errors``."""
    pipelines = settings.pipelines
    if not pipelines.enabled:
        return []
    ffprobe = shutil.which("ffprobe")
    models = load_descriptors(settings, errors)
    if parts.signer is None:
        return []
    shared = PipelineContext(reactor, parts.signer, pipelines.jobs_path, ffprobe,
                             Cooperator(), pipelines.environment, pipelines.job_niceness)
    routes = []
    for model in models:
        model_settings = pipelines.model(model.endpoint)
        route_settings = PipelineRoute(model, model_settings)
        filters = []
        for index, name in enumerate(pipelines.filters):
            try:
                filters.append(build_filter(name, context, route_settings))
            except ValueError as e:
                errors.append(ConfigError(pipelines.origin, f"pipelines.filters[{index}]",
                                          str(e)))
        uploads = [f.max_size for f in model.upload_fields]
        limit = (sum(uploads) + _MULTIPART_SLACK if all(u is not None for u in uploads)
                 else pipelines.max_request_size)
        routes.append(Route(
            name=model.endpoint,
            prefix=(model.endpoint,),
            filters=tuple(filters),
            terminal=CommandTerminal(model, model_settings, shared, pipelines.max_request_size),
            error_body=error_body_detail,
            max_body_size=limit,
        ))
    return routes

