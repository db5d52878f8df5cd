"""SIGHUP: read the settings and everything they point at again, check all of it, and serve
it from the next exchange on; a broken new configuration keeps the running one.

A reload reads the settings file (with its overlay and environment overrides), the PASETO and
WebSaaS keys, the TLS certificate, the roles and the model descriptors as the start did, then
builds the new routes. Only when all of that succeeded is it swapped in, at once: the next
exchange takes the new routes, those under way finish on the routes they began with, and the
old routes are retired once the last of them is over. Every problem is logged with its file,
line and YAML path, as at start. The parts kept across reloads (``KeptParts``) are lent to
the new routes, never started again.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import attrs
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.config.errors import ConfigError, ConfigErrors
from runnergw.config.load import load_settings
from runnergw.config.restart_only import keep_running_values
from runnergw.config.settings import Settings
from runnergw.http.head import HeadLimits
from runnergw.http.timers import ConnectionTimeouts
from runnergw.kept import KeptParts
from runnergw.limits.parts import LimitParts
from runnergw.logs import level_gate
from runnergw.retirement import retire_when_idle
from runnergw.routes import build_router
from runnergw.startup import GatewayParts, prepare
from runnergw.terminals.ollama_routes import runner_host_keys

if TYPE_CHECKING:
    from runnergw.chain.route import Router
    from runnergw.service import GatewayService

__all__ = ["Reloader"]


class _Refused(Exception):
    """The new configuration cannot be served: every problem, located."""

    def __init__(self, errors: tuple[ConfigError, ...]) -> None:
        super().__init__(errors)
        self.errors = errors


class _Abandoned(_Refused):
    """A stop began while the new configuration was built: it is not swapped in."""

    def __init__(self) -> None:
        super().__init__(())


@attrs.frozen
class _Candidate:
    """A new configuration, checked and built, not yet serving."""

    settings: Settings
    parts: GatewayParts
    tls: Any
    """The certificate it loaded (None without TLS), for the listener's to serve."""
    kept: KeptParts
    router: Router


class Reloader:
    """Runs the reloads of one service, one at a time: a reload asked for while one runs
    runs once that one is over (however many were asked for meanwhile)."""

    log = Logger(observer=level_gate)

    def __init__(self, service: GatewayService, announced: Callable[[], bool]) -> None:
        """``announced()`` says whether the service manager was told the gateway is ready
        (then each reload is announced, ``RELOADING=1`` … ``READY=1``)."""
        self.service = service
        self.announced = announced
        self.retirements: list[Deferred[None]] = []
        """Each replaced configuration's retirement, until it is done."""
        self._retiring: list[Router] = []
        """The replaced routers whose exchanges are not all over: their hosts stay."""
        self._busy = False
        self._queued: list[Deferred[bool]] = []

    def request(self) -> Deferred[bool]:
        """Reload now, or after the reload under way; fires with whether the reload that
        took this request in succeeded."""
        waiter: Deferred[bool] = Deferred()
        if self._busy:
            self._queued.append(waiter)
            return waiter
        self._busy = True
        self._run([waiter])
        return waiter

    def _run(self, waiters: list[Deferred[bool]]) -> None:
        # Once a stop began, the service manager hears no more of reloads (STOPPING=1 was
        # the last word it should get before the exit).
        announced = self.announced() and not self.service.readiness.draining
        if announced:
            self.service.notifier.reloading()
        ensureDeferred(self._reload()).addBoth(self._finished, waiters, announced)

    def _finished(self, ok: bool | Failure, waiters: list[Deferred[bool]],
                  announced: bool) -> None:
        if isinstance(ok, Failure):
            self.log.failure("Reload failed inside the gateway; still serving the previous "
                             "configuration", ok, event="reload_failed")
            self.service.reload_results["failed"] += 1
            ok = False
        if announced and not self.service.readiness.draining:
            self.service.notifier.ready(self.service.describe())
        for waiter in waiters:
            waiter.callback(ok)
        if self._queued:
            queued, self._queued = self._queued, []
            self._run(queued)
        else:
            self._busy = False

    async def _reload(self) -> bool:
        service = self.service
        if service.readiness.draining:
            self.log.warn("Reload ignored: the gateway is draining", event="reload_ignored")
            return False
        try:
            candidate = await self._build()
        except _Abandoned:
            self._retain_hosts()  # a runner host the abandoned routes made is closed
            self.log.warn("Reload abandoned: the gateway began to stop while it was built",
                          event="reload_ignored")
            return False
        except _Refused as refused:
            self._reopen_running_audit()
            self._retain_hosts()  # a runner host the refused routes made is closed
            service.reload_results["failed"] += 1
            for error in refused.errors:
                self.log.error("Reload: {problem}", event="reload_problem", problem=str(error))
            count = len(refused.errors)
            self.log.error("Reload refused, still serving the previous configuration: "
                           "{count} problem{s} above", event="reload_refused", count=count,
                           s="" if count == 1 else "s")
            return False
        self._swap(candidate)
        self._reopen_running_audit()
        service.reload_results["ok"] += 1
        self.log.info("Reloaded {config}: {routes} routes", event="reloaded",
                      config=candidate.settings.config_path,
                      routes=len(candidate.router.routes))
        return True

    async def _build(self) -> _Candidate:
        """Read, check and build the new configuration; nothing of the running one changes.

        Raises:
            _Refused: every problem found.
        """
        service = self.service
        running = service.settings
        try:
            loaded = load_settings(running.config_path)
        except ConfigErrors as e:
            raise _Refused(e.errors) from e
        settings, changes = keep_running_values(
            running, loaded, socket_passed=service.socket_passed,
            limits_kept=service.kept.limits is not None)
        for change in changes:
            self.log.warn("Reload: {config}: {path} changed from {running} to {wanted}, which "
                          "needs a restart; the running value stays", event="reload_restart_only",
                          config=running.config_path, path=change.path,
                          running=change.running, wanted=change.wanted)
        try:
            parts = prepare(settings)
        except ConfigErrors as e:
            raise _Refused(e.errors) from e
        tls = parts.tls
        parts = attrs.evolve(parts, tls=service.parts.tls)
        if settings.audit.path == running.audit.path:
            parts.audit_log.close()
            parts = attrs.evolve(parts, audit_log=service.parts.audit_log)
        kept = service.kept
        try:
            if settings.roles and kept.limits is None:
                kept = attrs.evolve(kept, limits=await self._start_limits(settings))
            try:
                router = build_router(settings, parts, service.reactor, kept=kept)
            except ConfigErrors as e:
                raise _Refused(e.errors) from e
            if service.readiness.draining:
                raise _Abandoned()  # the ledger opened while a stop began
        except _Refused:
            if parts.audit_log is not service.parts.audit_log:
                parts.audit_log.close()
            if kept.limits is not service.kept.limits:
                kept.limits.stop()  # type: ignore[union-attr]
            raise
        return _Candidate(settings, parts, tls, kept, router)

    async def _start_limits(self, settings: Settings) -> LimitParts:
        """The limits a ``roles`` section that appeared needs, started (the ledger open and
        today's usage read)."""
        limits = LimitParts.from_settings(settings, self.service.reactor)
        try:
            await limits.start()
        except Exception as e:
            await limits.stop()
            raise _Refused((ConfigError(settings.policy.origin, "policy.ledgerPath",
                                        f"{settings.policy.ledger_path}: cannot open the "
                                        f"usage ledger: {e}"),)) from e
        return limits

    def _swap(self, candidate: _Candidate) -> None:
        """Serve the new configuration from the next exchange (and connection) on; retire
        the old routes once their exchanges are over."""
        service = self.service
        old_router, old_parts = service.router, service.parts
        if candidate.tls is not None and old_parts.tls is not None:
            old_parts.tls.serve_as(candidate.tls)
        server = candidate.settings.server
        factory: Any = service.factory
        factory.limits = HeadLimits(server.max_header_line, server.max_header_fields,
                                    server.max_header_bytes)
        factory.timeouts = ConnectionTimeouts(
            server.header_timeout, server.read_timeout, server.write_timeout,
            server.keep_alive_timeout, server.min_body_data_rate,
            server.min_body_data_rate_grace)
        service.kept.limits = service.limits = candidate.kept.limits
        jobs = service.kept.jobs
        if jobs is not None:
            jobs.update(shutil.which("ffprobe"), candidate.settings.pipelines.environment)
        level_gate.set_level(candidate.settings.logging.level)
        service.drain.settings = candidate.settings.shutdown
        service.settings, service.parts = candidate.settings, candidate.parts
        factory.handler.router = service.router = candidate.router
        if service.running:
            for route in candidate.router.routes:
                start = getattr(route.terminal, "start", None)
                if start is not None:
                    start()
        also = [] if old_parts.audit_log is candidate.parts.audit_log else \
            [old_parts.audit_log.close]
        self._retiring.append(old_router)
        retirement = retire_when_idle(old_router, also)
        retirement.addCallback(self._retired, old_router)
        if not retirement.called:
            self.retirements.append(retirement)
            retirement.addBoth(lambda result: (self.retirements.remove(retirement), result)[1])

    def _retired(self, _: object, router: Router) -> None:
        self._retiring.remove(router)
        self._retain_hosts()

    def _retain_hosts(self) -> None:
        """Close the runner hosts that neither the current routes nor those still retiring
        use (a runner removed, or its host's settings changed)."""
        hosts = self.service.kept.hosts
        if hosts is None:
            return
        routes = [*self.service.router.routes,
                  *(route for router in self._retiring for route in router.routes)]
        hosts.retain(runner_host_keys(routes)).addErrback(
            lambda failure: self.log.failure("Closing an unused runner host failed", failure,
                                             event="retire_failed"))

    def _reopen_running_audit(self) -> None:
        """Follow an audit file moved away (logrotate), as every SIGHUP does."""
        audit_log = self.service.parts.audit_log
        try:
            audit_log.reopen()
        except OSError as e:
            self.log.error("Cannot reopen the audit trail {path}: {error}",
                           event="audit_reopen_failed", path=audit_log.path, error=str(e))
