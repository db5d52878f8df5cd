"""The ``pipelines`` section: command-line models served from descriptor files."""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

import attrs

from runnergw.config.errors import Origin
from runnergw.config.filters import FilterSpec, read_filter_specs
from runnergw.config.reader import MapReader

__all__ = ["ModelSettings", "PipelineSettings", "DEFAULT_PIPELINE_FILTERS"]

DEFAULT_PIPELINE_FILTERS = ("websaas", "role", "mediaLimits", "audit")
_ENVIRONMENT_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@attrs.frozen
class ModelSettings:
    """How one model's jobs run."""

    timeout: float = 1000.0
    concurrency: int = 1
    """Jobs at once (one GPU: one job)."""
    queue_size: int = 8
    """Requests that may wait for a slot; beyond that, 503 with Retry-After."""


@attrs.frozen
class PipelineSettings:
    """Where descriptors, keys and job directories are, and the defaults of every model."""

    enabled: bool = False
    models_path: str = "models-enabled"
    jobs_path: str = attrs.field(
        factory=lambda: str(Path(tempfile.gettempdir()) / f"runnergw-jobs-{os.getuid()}"))
    saas_public_key_path: str = "keys/saas_public.pem"
    node_private_key_path: str = "keys/node_private.pem"
    server_id: str = attrs.field(default="", repr=False)
    max_user_token_age: float = 3600.0
    issuer: str = ""
    audience: str = ""
    filters: tuple[FilterSpec, ...] = tuple(FilterSpec(name) for name in DEFAULT_PIPELINE_FILTERS)
    max_request_size: int = 2 << 30
    """Cap on a whole request when an upload field declares no ``maxSize``."""
    environment: Mapping[str, str] = attrs.field(factory=dict)
    """Variables added to every job's clean environment (PATH, CUDA_VISIBLE_DEVICES…)."""
    job_niceness: int = 10
    """Jobs run this much nicer than the gateway: a busy CPU serves the gateway first."""
    defaults: ModelSettings = attrs.field(factory=ModelSettings)
    models: Mapping[str, ModelSettings] = attrs.field(factory=dict)
    """Per-endpoint overrides of ``defaults``."""
    origin: Origin = attrs.field(default=Origin("<defaults>"), eq=False, repr=False)

    def model(self, endpoint: str) -> ModelSettings:
        """Settings of the model behind ``endpoint``."""
        return self.models.get(endpoint, self.defaults)

    @classmethod
    def from_yaml(cls, section: MapReader, present: bool) -> PipelineSettings:
        """Read the section (``present``: the key exists in the settings)."""
        defaults = cls()
        model_defaults = _read_model(section, ModelSettings())
        models = {}
        overrides = section.section("models")
        for endpoint in overrides.keys():
            models[endpoint] = _read_model(overrides.section(endpoint), model_defaults,
                                           finish=True)
        overrides.finish()
        settings = cls(
            enabled=present and section.boolean("enabled", True),
            models_path=section.string("modelsPath", defaults.models_path),
            jobs_path=section.string("jobsPath", defaults.jobs_path),
            saas_public_key_path=section.string("saasPublicKeyPath",
                                                defaults.saas_public_key_path),
            node_private_key_path=section.string("nodePrivateKeyPath",
                                                 defaults.node_private_key_path),
            server_id=section.string("serverId"),
            max_user_token_age=section.duration("maxUserTokenAge", defaults.max_user_token_age),
            issuer=section.string("issuer"),
            audience=section.string("audience"),
            filters=read_filter_specs(section, "filters", DEFAULT_PIPELINE_FILTERS),
            max_request_size=section.size("maxRequestSize", defaults.max_request_size),
            environment=section.string_map("environment"),
            job_niceness=section.integer("jobNiceness", defaults.job_niceness, 0, 19),
            defaults=model_defaults,
            models=models,
            origin=section.origin,
        )
        for name, value in settings.environment.items():
            if not _ENVIRONMENT_NAME.fullmatch(name) or "\0" in value:
                section.error("environment", f'"{name}" is not a usable environment variable')
        if settings.enabled and not settings.server_id:
            section.error("serverId", "required: the id agreed with the SaaS (runnergw "
                          "server-id makes one; SERVER_ID in the environment works too)")
        section.finish()
        return settings


def _read_model(section: MapReader, base: ModelSettings, finish: bool = False) -> ModelSettings:
    settings = ModelSettings(
        timeout=section.duration("timeout", base.timeout),
        concurrency=section.integer("concurrency", base.concurrency, 1, 256),
        queue_size=section.integer("queueSize", base.queue_size, 0, 100000),
    )
    if section.has("timeout") and settings.timeout <= 0:
        # Only where it is written: a model inheriting a bad default is not told again.
        section.error("timeout", "must be longer than zero")
    if finish:
        section.finish()
    return settings
