"""The gateway service: assembles routes and filter chains, listens, reloads on SIGHUP."""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.defer import gatherResults
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ClientEndpoint,
    TCP6ServerEndpoint,
    wrapClientTLS,
)
from twisted.internet.interfaces import IListeningPort, IStreamClientEndpoint
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from runnergw.config.errors import ConfigError, ConfigErrors
from runnergw.config.runners import RunnerSettings
from runnergw.config.settings import Settings
from runnergw.filters.audit import AuditFilter
from runnergw.filters.registry import FilterContext, build_filter
from runnergw.http.head import HeadLimits
from runnergw.http.server import ConnectionTimeouts, GatewayHTTPFactory
from runnergw.logs import level_gate
from runnergw.chain.runner import ChainRunner
from runnergw.chain.route import Route, Router, error_body_detail, error_body_ollama
from runnergw.pipelines.routes import build_pipeline_routes
from runnergw.pipelines.workdir import JobsPathBusy, clean_job_directories, lock_jobs_path
from runnergw.startup import GatewayParts
from runnergw.terminals.commands import CommandTerminal
from runnergw.terminals.ollama import OllamaTerminal
from runnergw.tls import TLSConfigError
from runnergw.upstream.pool import UpstreamPool

__all__ = ["GatewayService", "build_router"]


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


def build_router(
    settings: Settings, parts: GatewayParts, reactor: Any, pools: list[UpstreamPool]
) -> Router:
    """Build every route's chain and terminal from settings; runner pools are added to ``pools``.

    Raises:
        ConfigErrors: unknown filters, unreadable CA bundles.
    """
    context = FilterContext(settings=settings, clock=reactor, audit_log=parts.audit_log,
                            verifier=parts.verifier, saas_verifier=parts.saas_verifier)
    errors: list[ConfigError] = []
    routes = []
    for runner in settings.runners:
        filters = []
        for index, name in enumerate(runner.filters):
            try:
                filters.append(build_filter(name, context, runner))
            except ValueError as e:
                errors.append(ConfigError(runner.origins["filters"],
                                          f"{runner.yaml_path}.filters[{index}]", str(e)))
        try:
            endpoint = _runner_endpoint(reactor, runner)
        except OSError as e:
            errors.append(ConfigError(runner.origins["caPath"], f"{runner.yaml_path}.caPath",
                                      f"{runner.ca_path}: {e.strerror}"))
            continue
        pool = UpstreamPool(endpoint, reactor, max_idle=runner.max_connections)
        pools.append(pool)
        routes.append(Route(
            name=runner.name,
            prefix=runner.prefix_segments,
            filters=tuple(filters),
            terminal=OllamaTerminal(runner, pool, reactor),
            max_body_size=runner.max_body_size,
        ))
    pipeline_routes = build_pipeline_routes(settings, context, parts, reactor, errors)
    taken = {route.prefix for route in routes}
    for route in pipeline_routes:
        if route.prefix in taken:
            errors.append(ConfigError(settings.pipelines.origin, "pipelines",
                                      f'endpoint "{route.name}" is also a runner prefix'))
        routes.append(route)
    if errors:
        raise ConfigErrors(errors)
    # A node that only serves pipelines answers unknown paths as the FastAPI node did.
    only_pipelines = not settings.runners and settings.pipelines.enabled
    fallback = Route(name="", prefix=(), filters=(AuditFilter(parts.audit_log),), terminal=None,
                     error_body=error_body_detail if only_pipelines else error_body_ollama)
    return Router(routes, fallback)


class GatewayService(MultiService):
    """Listens on ``server.address`` and serves every route.

    SIGHUP reloads the TLS files and reopens the audit file.
    """

    log = Logger(observer=level_gate)

    def __init__(self, settings: Settings, parts: GatewayParts, reactor: Any) -> None:
        super().__init__()
        self.settings = settings
        self.parts = parts
        self.reactor = reactor
        server = settings.server
        self.pools: list[UpstreamPool] = []
        self.factory = GatewayHTTPFactory(
            ChainRunner(build_router(settings, parts, reactor, self.pools)),
            reactor,
            limits=HeadLimits(server.max_header_line, server.max_header_fields,
                              server.max_header_bytes),
            timeouts=ConnectionTimeouts(server.header_timeout, server.read_timeout,
                                        server.write_timeout, server.keep_alive_timeout,
                                        server.min_body_data_rate, server.min_body_data_rate_grace),
            secure=parts.tls is not None,
        )
        self.port: IListeningPort | None = None
        self._previous_hup: Any = None
        self._jobs_lock: int | None = None
        """Held while the gateway runs: one gateway per jobs directory."""

    def privilegedStartService(self) -> None:
        """Take the jobs directory, then bind the listener now (before privileges drop); a
        failure of either is fatal."""
        super().privilegedStartService()
        self._lock_jobs_path()
        address = self.settings.server.address
        host = address.host or "::"
        endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        endpoint = endpoint_type(self.reactor, address.port, interface=host)
        factory: Any = self.factory
        if self.parts.tls is not None:
            factory = TLSMemoryBIOFactory(self.parts.tls, False, self.factory)
        outcome: list[Any] = []
        endpoint.listen(factory).addBoth(outcome.append)
        if not outcome or isinstance(outcome[0], Failure):
            reason = outcome[0].getErrorMessage() if outcome else "no answer"
            raise SystemExit(f"runnergw: cannot listen on {address}: {reason}")
        self.port = outcome[0]

    def _lock_jobs_path(self) -> None:
        pipelines = self.settings.pipelines
        if not pipelines.enabled or self._jobs_lock is not None:
            return
        try:
            self._jobs_lock = lock_jobs_path(pipelines.jobs_path)
        except (JobsPathBusy, OSError) as e:
            reason = str(e) if isinstance(e, JobsPathBusy) else \
                f"{pipelines.jobs_path}: cannot lock: {e.strerror}"
            raise SystemExit(f"runnergw: {pipelines.origin.describe()}: "
                             f"pipelines.jobsPath: {reason}") from e

    def startService(self) -> None:
        if self.port is None:
            self.privilegedStartService()
        pipelines = self.settings.pipelines
        if pipelines.enabled:
            removed = clean_job_directories(pipelines.jobs_path)
            if removed:
                self.log.info("Removed {count} job directories left by an earlier run",
                              count=removed)
        super().startService()
        bound = self.port.getHost()  # type: ignore[union-attr]
        scheme = "https" if self.parts.tls is not None else "http"
        host = f"[{bound.host}]" if ":" in bound.host else bound.host
        self.log.info("runnergw listening on {url}", event="listening",
                      url=f"{scheme}://{host}:{bound.port}")
        try:
            self._previous_hup = signal.signal(signal.SIGHUP, self._on_sighup)
        except ValueError:
            self._previous_hup = None  # not the main thread (embedded use): no signal

    def stopService(self) -> Any:
        if self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
            self._previous_hup = None
        super().stopService()
        port, self.port = self.port, None
        launchers = {}
        for route in self.factory.gateway.router.routes:
            if isinstance(route.terminal, CommandTerminal):
                route.terminal.kill_jobs()
                launcher = route.terminal.context.launcher
                launchers[id(launcher)] = launcher
        self.factory.close_connections()
        waits = [pool.close() for pool in self.pools]
        waits.extend(launcher.stop() for launcher in launchers.values())
        if port is not None:
            waits.append(port.stopListening())
        self.parts.audit_log.close()
        if self._jobs_lock is not None:
            os.close(self._jobs_lock)
            self._jobs_lock = None
        return gatherResults([d for d in waits if d is not None])

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)

    def reload(self) -> None:
        """Reload the TLS certificate and key for new connections and reopen the audit file."""
        if self.parts.tls is not None:
            try:
                self.parts.tls.reload()
            except TLSConfigError as e:
                self.log.error("TLS reload failed, still serving the previous certificate: "
                               "{error}", event="tls_reload_failed", error=str(e))
        try:
            self.parts.audit_log.reopen()
        except OSError as e:
            self.log.error("Cannot reopen the audit trail {path}: {error}",
                           path=self.parts.audit_log.path, error=str(e))
