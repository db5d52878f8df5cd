"""The whole settings tree."""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from runnergw.config.audit import AuditSettings
from runnergw.config.limits_backend import LimitsSettings, share_problems
from runnergw.config.logging import LoggingSettings
from runnergw.config.metrics import MetricsSettings
from runnergw.config.paseto import PasetoSettings
from runnergw.config.pipelines import PipelineSettings
from runnergw.config.policy import PolicySettings
from runnergw.config.reader import MapReader
from runnergw.config.redis import RedisSettings
from runnergw.config.roles import RoleSettings, read_roles
from runnergw.config.runners import (
    DEFAULT_FILTERS,
    POLICY_FILTERS,
    RunnerSettings,
    read_runners,
)
from runnergw.config.server import ServerSettings
from runnergw.config.shutdown import ShutdownSettings
from runnergw.config.workers import nodes_problems, workers_problems

__all__ = ["Settings"]


@attrs.frozen
class Settings:
    """Everything read from the settings files and environment."""

    files: tuple[str, ...]
    """The settings files, base first."""
    logging: LoggingSettings = attrs.field(factory=LoggingSettings)
    paseto: PasetoSettings = attrs.field(factory=PasetoSettings)
    runners: tuple[RunnerSettings, ...] = ()
    server: ServerSettings = attrs.field(factory=ServerSettings)
    audit: AuditSettings = attrs.field(factory=AuditSettings)
    pipelines: PipelineSettings = attrs.field(factory=PipelineSettings)
    roles: Mapping[str, RoleSettings] = attrs.field(factory=dict)
    """Role name → its rules on Ollama routes; empty: any valid token, no limits."""
    policy: PolicySettings = attrs.field(factory=PolicySettings)
    metrics: MetricsSettings = attrs.field(factory=MetricsSettings)
    shutdown: ShutdownSettings = attrs.field(factory=ShutdownSettings)
    limits: LimitsSettings = attrs.field(factory=LimitsSettings)
    redis: RedisSettings = attrs.field(factory=RedisSettings)

    @property
    def config_path(self) -> str:
        """The settings file named on the command line (the base of any overlay)."""
        return self.files[0]

    @classmethod
    def from_yaml(cls, root: MapReader, files: tuple[str, ...]) -> Settings:
        """Read every section, recording problems in the root's sink."""
        roles = read_roles(root)
        policy = PolicySettings.from_yaml(root.section("policy"))
        settings = cls(
            files=files,
            logging=LoggingSettings.from_yaml(root.section("logging")),
            paseto=PasetoSettings.from_yaml(root.section("paseto")),
            runners=read_runners(root, POLICY_FILTERS if roles else DEFAULT_FILTERS),
            server=ServerSettings.from_yaml(root.section("server")),
            audit=AuditSettings.from_yaml(root.section("audit")),
            pipelines=PipelineSettings.from_yaml(
                root.section("pipelines"),
                # A section made only by an override (SERVER_ID in the environment or in
                # a .env file) does not turn pipelines on.
                root.has("pipelines") and root.origin_of("pipelines").source in files,
            ),
            roles=roles,
            policy=policy,
            metrics=MetricsSettings.from_yaml(root.section("metrics")),
            shutdown=ShutdownSettings.from_yaml(root.section("shutdown")),
            limits=LimitsSettings.from_yaml(root.section("limits")),
            redis=RedisSettings.from_yaml(root.section("redis")),
        )
        if roles and policy.default_role not in roles:
            known = ", ".join(roles)
            root.section("policy").error(
                "defaultRole", f'"{policy.default_role}" is not a role of the roles section '
                               f"({known}): tokens without a role claim would have no rules")
        for key, message in workers_problems(settings):
            root.section("server").error(key, message)
        for key, message in nodes_problems(settings):
            root.section("limits").error(key, message)
        for origin, path, message in share_problems(settings.limits, roles.values()):
            root.sink.add(origin, path, message)
        if not settings.runners and not settings.pipelines.enabled:
            root.error("runners", "nothing to serve: add a runner or a pipelines section")
        root.finish()
        return settings
