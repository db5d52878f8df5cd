"""The gateway service: assembles routes and filter chains, listens, reloads on SIGHUP."""

from __future__ import annotations

import os
import signal
from typing import Any

from twisted.application.service import MultiService
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
from twisted.internet.interfaces import IListeningPort
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure

from runnergw.chain.runner import ChainRunner
from runnergw.config.settings import Settings
from runnergw.drain import Drain
from runnergw.exit_status import DRAIN_CUT, FAILED_AT_START
from runnergw.health import Readiness
from runnergw.http.factory import GatewayHTTPFactory
from runnergw.http.head import HeadLimits
from runnergw.http.timers import ConnectionTimeouts
from runnergw.jobs.workdir import JobsPathBusy, clean_job_directories, lock_jobs_path
from runnergw.kept import KeptParts
from runnergw.logs import level_gate
from runnergw.metrics.listener import MetricsListener
from runnergw.metrics.pages import metrics_root
from runnergw.metrics.registry import GatewayMetrics
from runnergw.reload import Reloader
from runnergw.routes import build_router
from runnergw.startup import GatewayParts
from runnergw.stop_signals import SignalHandlers
from runnergw.systemd.activation import (
    ActivationError,
    choose_listener,
    forget_environment,
    make_non_blocking,
    passed_sockets,
    probe,
    start_environment,
)
from runnergw.systemd.notify import Notifier
from runnergw.workers.role import WorkerRole

__all__ = ["GatewayService"]


class GatewayService(MultiService):
    """Listens on ``server.address`` (or on the socket systemd passes, ``LISTEN_FDS``) and
    serves every route.

    SIGHUP reloads everything (``runnergw.reload``) and reopens the audit file. SIGTERM (or
    SIGINT) drains (``runnergw.drain``); SIGUSR1 reopens the audit file. Under systemd
    (``$NOTIFY_SOCKET``) the service manager is told when the gateway is ready, reloading and
    stopping.
    """

    log = Logger(observer=level_gate)

    def __init__(self, settings: Settings, parts: GatewayParts, reactor: Any,
                 notifier: Notifier | None = None, worker: WorkerRole | None = None) -> None:
        """``worker``: this service is one of several processes (``server.workers``) and
        serves on the socket its supervisor passed."""
        super().__init__()
        self.worker = worker
        self.settings = settings
        self.parts = parts
        self.reactor = reactor
        server = settings.server
        self.kept = KeptParts.from_settings(settings, reactor)
        """The parts every generation of routes shares: a reload keeps them."""
        self.limits = self.kept.limits
        self.router = build_router(settings, parts, reactor, kept=self.kept)
        self.factory = GatewayHTTPFactory(
            ChainRunner(self.router),
            reactor,
            limits=HeadLimits(server.max_header_line, server.max_header_fields,
                              server.max_header_bytes),
            timeouts=ConnectionTimeouts(server.header_timeout, server.read_timeout,
                                        server.write_timeout, server.keep_alive_timeout,
                                        server.min_body_data_rate, server.min_body_data_rate_grace),
            secure=parts.tls is not None,
        )
        self.port: IListeningPort | None = None
        self.socket_passed = False
        """Whether the listener is a socket the service manager passed (``LISTEN_FDS``)."""
        self._previous_hup: Any = None
        self._jobs_lock: int | None = None
        """Held while the gateway runs: one gateway per jobs directory."""
        self.notifier = notifier if notifier is not None else Notifier.from_environment(reactor)
        self.url = ""
        """Where the gateway serves, once started."""
        self._announced = False
        """Whether the service manager was told the gateway is ready."""
        self._failed_at_start = False
        """Whether the gateway stopped because a part it needs could not start."""
        self.readiness = Readiness()
        """What ``/readyz`` answers: starting (until READY=1), draining, and the terminals'
        own reasons."""
        self.readiness.starting = True
        self.readiness.add_check(self._terminals_ready)
        self.reload_results: dict[str, int] = {"ok": 0, "failed": 0}
        """How many reloads succeeded and failed since the start (the metrics show them)."""
        self.reloader = Reloader(self, announced=lambda: self._announced and self.running)
        self.metrics: GatewayMetrics | None = None
        """The Prometheus metrics (None when ``metrics.address`` is off)."""
        self._metrics_listener: MetricsListener | None = None
        self.metrics_url = ""
        """Where ``/metrics``, ``/healthz`` and ``/readyz`` are served, once started."""
        if settings.metrics.enabled:
            self.metrics = GatewayMetrics(self, reactor)
            self.factory.handler.observers.append(self.metrics.observe)
        self.drain = Drain(settings.shutdown, reactor, readiness=self.readiness,
                           notifier=self.notifier, factory=self.factory,
                           inflight=self.factory.handler.inflight,
                           stop_listening=self._stop_listening,
                           end_under_way=self._end_under_way, stop=reactor.stop)
        """What SIGTERM starts; tells, once over, whether it was clean (the exit status)."""
        self._signals = SignalHandlers(reactor, {
            signal.SIGTERM: self._on_stop_signal, signal.SIGINT: self._on_stop_signal,
            signal.SIGUSR1: lambda _: self.reopen_audit()})

    def privilegedStartService(self) -> None:
        """Take the jobs directory, then listen now (before privileges drop): on the socket
        systemd passed when there is one, else on ``server.address``; a failure of either is
        fatal."""
        super().privilegedStartService()
        self._lock_jobs_path()
        factory: Any = self.factory
        if self.parts.tls is not None:
            factory = TLSMemoryBIOFactory(self.parts.tls, False, self.factory)
        if self.worker is not None:
            self._adopt_supervisor_socket(self.worker.listen_fd, factory)
            self._listen_metrics()
            return
        if self._adopt_passed_socket(factory):
            self._listen_metrics()
            return
        address = self.settings.server.address
        host = address.host or "::"
        endpoint_type = TCP6ServerEndpoint if ":" in host else TCP4ServerEndpoint
        endpoint = endpoint_type(self.reactor, address.port, interface=host)
        outcome: list[Any] = []
        endpoint.listen(factory).addBoth(outcome.append)
        if not outcome or isinstance(outcome[0], Failure):
            reason = outcome[0].getErrorMessage() if outcome else "no answer"
            raise SystemExit(f"runnergw: cannot listen on {address}: {reason}")
        self.port = outcome[0]
        self._listen_metrics()

    def _adopt_passed_socket(self, factory: Any) -> bool:
        """Listen on the socket the service manager passed (``LISTEN_FDS``), if any; the
        ``LISTEN_*`` variables are then removed so programs the gateway starts do not take
        them for theirs."""
        try:
            sockets = passed_sockets(start_environment(os.environ), os.getpid())
            chosen = choose_listener(sockets)
        except ActivationError as e:
            raise SystemExit(f"runnergw: socket activation: {e}") from e
        forget_environment(os.environ, sockets, keep=chosen)
        if chosen is None:
            return False
        family = probe(chosen.fd).family
        try:
            make_non_blocking(chosen.fd)
            self.port = self.reactor.adoptStreamPort(chosen.fd, family, factory)
        except Exception as e:
            raise SystemExit(f"runnergw: cannot listen on the socket passed as "
                             f"{chosen.describe()}: {e}") from e
        os.close(chosen.fd)  # the port listens on its own copy
        self.socket_passed = True
        self.log.info("Listening on the socket passed by the service manager, {socket}, "
                      "at {address}; server.address ({configured}) is not used",
                      event="socket_adopted", socket=chosen.describe(),
                      address=_describe_host(self.port.getHost()),  # type: ignore[union-attr]
                      configured=str(self.settings.server.address))
        return True

    def _adopt_supervisor_socket(self, fd: int, factory: Any) -> None:
        """Accept on the listening socket the supervisor passed as ``fd``, beside the other
        workers."""
        try:
            make_non_blocking(fd)
            self.port = self.reactor.adoptStreamPort(fd, probe(fd).family, factory)
        except Exception as e:
            raise SystemExit(f"runnergw: cannot listen on the socket the supervisor passed "
                             f"as fd {fd}: {e}") from e
        os.close(fd)  # the port listens on its own copy

    def _listen_metrics(self) -> None:
        """Serve ``/metrics``, ``/healthz`` and ``/readyz`` on ``metrics.address``; a failure
        to bind it is fatal."""
        address = self.settings.metrics.address
        if self.metrics is None or address is None or self._metrics_listener is not None:
            return
        warning = self.settings.metrics.exposure_warning()
        if warning is not None and self.worker is None:
            self.log.warn(warning, event="metrics_exposed")
        listener = MetricsListener(
            self.reactor, address if self.worker is None else self.worker.metrics_path,
            metrics_root(self.metrics.registry, self.readiness))
        try:
            url = listener.listen()
        except SystemExit:
            if self.port is not None:  # not left open behind the failure
                self.port.stopListening()
                self.port = None
            raise
        self._metrics_listener = listener
        self.metrics_url = url
        self.log.info("Metrics, /healthz and /readyz on {url}", event="metrics_listening",
                      url=url)

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
        for route in self.router.routes:
            start = getattr(route.terminal, "start", None)
            if start is not None:
                start()  # a runner reads its hosts' loaded models while the gateway serves
        bound = self.port.getHost()  # type: ignore[union-attr]
        scheme = "https" if self.parts.tls is not None else "http"
        host = f"[{bound.host}]" if ":" in bound.host else bound.host
        self.url = f"{scheme}://{host}:{bound.port}"
        # SIGHUP is handled before the gateway says it listens (or is ready): a reload may
        # follow at once, and SIGHUP's default action would end the process.
        try:
            self._previous_hup = signal.signal(signal.SIGHUP, self._on_sighup)
        except ValueError:
            self._previous_hup = None  # not the main thread (embedded use): no signal
        self.log.info("runnergw listening on {url}", event="listening", url=self.url)
        # The reactor installs its own stop signal handlers as it starts running (they would
        # stop it at once): these replace them then.
        self.reactor.callWhenRunning(self._install_signals)
        if self.settings.limits.shared and self.limits is None:
            self.log.warn("limits.backend is redis but there is no roles section: no limit "
                          "is counted, Redis is not used", event="limits_backend_unused")
        # Ready once the listener is bound and the usage ledger (when quotas need one) is open.
        opened = self.limits.start() if self.limits is not None else succeed(None)
        opened.addCallbacks(self._announce_ready, self._ledger_failed)

    def stopService(self) -> Any:
        self.notifier.stopping(f"stopping: {self._connections()}")
        self._signals.uninstall()
        if self._previous_hup is not None:
            signal.signal(signal.SIGHUP, self._previous_hup)
            self._previous_hup = None
        super().stopService()
        port, self.port = self.port, None
        waits = [route.terminal.stop() for route in self.router.routes
                 if route.terminal is not None]
        # The kept parts are stopped whatever routes use them now: a reload may have left
        # no command route to stop the launcher, and retired routes' hosts close here too.
        if self.kept.jobs is not None:
            waits.append(self.kept.jobs.stop())
        if self.kept.hosts is not None:
            waits.append(self.kept.hosts.close())
        self.factory.close_connections()
        if port is not None:
            waits.append(port.stopListening())
        if self._metrics_listener is not None:
            waits.append(self._metrics_listener.stop())
            self._metrics_listener = None
        self.parts.audit_log.close()
        if self._jobs_lock is not None:
            os.close(self._jobs_lock)
            self._jobs_lock = None
        stopped = gatherResults([d for d in waits if d is not None])
        if self.limits is not None:
            # Last: the exchanges ended above have recorded their usage.
            limits = self.limits
            stopped.addBoth(lambda result: limits.stop().addCallback(lambda _: result))
        stopped.addBoth(lambda result: (self.notifier.stop(), result)[1])
        return stopped

    def _terminals_ready(self) -> list[str]:
        """The reasons the current routes' terminals give (``not_ready_reasons()``, for a
        runner without a healthy host)."""
        reasons: list[str] = []
        for route in self.router.routes:
            check = getattr(route.terminal, "not_ready_reasons", None)
            if check is not None:
                reasons.extend(check())
        return reasons

    def describe(self) -> str:
        """The status line ``systemctl status`` shows: connections, exchanges under way,
        jobs running, and the drain's progress while it runs."""
        exchanges = self.factory.handler.inflight.count
        # The kept slots count the jobs of routes a reload replaced too.
        jobs = sum(slots.running for slots in self.kept.job_slots().values())
        line = (f"serving on {self.url}: {self._connections()}, "
                f"{_count(exchanges, 'exchange')} under way, {_count(jobs, 'job')} running")
        if self.drain.running:
            line += f"; {self.drain.describe()}"
        return line

    def _connections(self) -> str:
        return f"{_count(len(self.factory.connections), 'open connection')}"

    def _install_signals(self) -> None:
        if self.running:
            self._signals.install()

    def _on_stop_signal(self, signum: int) -> None:
        self.drain.begin(signal.Signals(signum).name, self.describe)

    def _stop_listening(self) -> Deferred[None] | None:
        """Refuse new connections (the drain)."""
        port, self.port = self.port, None
        return port.stopListening() if port is not None else None

    def _end_under_way(self) -> Deferred[Any]:
        """End what is under way (the drain's grace is over): every exchange first, whichever
        routes it began on (a 503 or a final error line), then the current routes'
        terminals stop (jobs killed, connections closed). In the other order, stopping the
        shared job launcher would fail a job begun before a reload with a 500."""
        self.factory.handler.under_way.end_all()
        stopped = [route.terminal.stop() for route in self.factory.handler.router.routes
                   if route.terminal is not None]
        return gatherResults([d for d in stopped if d is not None])

    def reopen_audit(self) -> None:
        """Reopen the audit file (SIGUSR1, after logrotate renamed it)."""
        try:
            self.parts.audit_log.reopen()
        except OSError as e:
            self.log.error("Cannot reopen the audit trail {path}: {error}",
                           event="audit_reopen_failed", path=self.parts.audit_log.path,
                           error=str(e))
            return
        self.log.info("Audit trail reopened", event="audit_reopened")

    def _announce_ready(self, _: object) -> None:
        if not self.running:
            return  # stopped while the ledger opened
        self._announced = True
        self.readiness.starting = False
        self.log.info("runnergw ready", event="ready")
        self.notifier.ready(self.describe())
        self.notifier.start(self.describe)

    def _ledger_failed(self, failure: Failure) -> None:
        """Quotas cannot be kept without the ledger: the gateway stops."""
        if not self.running:
            return  # stopped while the ledger opened: nothing to stop
        self.log.critical("Cannot open the usage ledger {path}: {error}; stopping",
                          event="ledger_failed", path=self.settings.policy.ledger_path,
                          error=failure.getErrorMessage())
        self._failed_at_start = True
        self.reactor.stop()

    def exit_status(self) -> int:
        """What the process should exit with once stopped (``runnergw.exit_status``)."""
        if self._failed_at_start:
            return FAILED_AT_START
        return DRAIN_CUT if self.drain.clean is False else 0

    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.reload)

    def reload(self) -> Deferred[bool]:
        """Read the settings and everything they point at again and serve them, or keep the
        running configuration when anything is wrong (see ``runnergw.reload``); reopen the
        audit file. Fires with whether the reload succeeded."""
        return self.reloader.request()


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


def _describe_host(address: Any) -> str:
    host = f"[{address.host}]" if ":" in address.host else address.host
    return f"{host}:{address.port}"
