"""The supervisor of ``server.workers``: the process twistd starts when several gateway
processes serve one machine.

It holds the listening socket (bound on ``server.address``, or the one the service manager
passed) and starts the workers (``python -m runnergw.worker``), each accepting on it: the
kernel spreads the connections between them. It speaks to the service manager for all of
them (each worker tells it, on a private datagram socket, what a lone gateway tells
systemd), passes SIGHUP, SIGUSR1, SIGTERM and SIGINT on, restarts a worker that died
unexpectedly (with a growing delay), and serves the metrics listener, gathering the
workers' metrics.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from prometheus_client.metrics_core import Metric
from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults, succeed
from twisted.internet.error import ProcessExitedAlready
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.config.reader import ListenAddress
from runnergw.config.settings import Settings
from runnergw.exit_status import DRAIN_CUT, FAILED_AT_START
from runnergw.logs import level_gate
from runnergw.metrics.listener import MetricsListener
from runnergw.stop_signals import SignalHandlers
from runnergw.systemd.notify import Notifier
from runnergw.workers.listening_socket import SharedSocket, open_shared_socket
from runnergw.workers.pages import WorkerPages, supervisor_families, workers_root
from runnergw.workers.process import WorkerNotices, WorkerProcess, worker_environment
from runnergw.workers.reload_report import RELOAD_FIELD, ReloadRound
from runnergw.workers.role import LISTEN_FD, WorkerRole
from runnergw.workers.run_dir import WORKER_LOCK_FD, make_run_dir, remove_stale_run_dirs

__all__ = ["FIRST_BACKOFF", "MAX_BACKOFF", "WorkerSupervisor"]

FIRST_BACKOFF = 1.0
"""Seconds before a worker that died is started again; doubled at each death in a row."""
MAX_BACKOFF = 30.0
"""The longest wait before a worker is started again."""

@attrs.define
class _Worker:
    """One worker slot: the process serving it now, and what it reported."""

    role: WorkerRole
    transport: Any = None
    pid: int | None = None
    ready: bool = False
    """Reported READY=1 since it started."""
    restarts: int = 0
    backoff: float = FIRST_BACKOFF
    restart_call: Any = None
    reload_pending: bool = False
    """A SIGHUP came while it was starting: it is passed on once the worker serves."""
    status: int | None = None
    """Its exit status, once it ended during a stop."""
    reloads: dict[str, int] = attrs.field(factory=lambda: {"ok": 0, "refused": 0})
    """Reloads it answered, by outcome."""


class WorkerSupervisor(Service):
    """Starts ``server.workers`` workers on one shared listening socket and keeps them."""

    log = Logger(observer=level_gate)

    def __init__(self, settings: Settings, reactor: Any, notifier: Notifier | None = None,
                 executable: str = sys.executable,
                 environ: Mapping[str, str] | None = None,
                 open_socket: Callable[[ListenAddress], SharedSocket] = open_shared_socket
                 ) -> None:
        """``environ``: what the workers' environment is made from (``os.environ``);
        ``open_socket`` opens the listening socket."""
        self.settings = settings
        self.reactor = reactor
        self.executable = executable
        self.environ = os.environ if environ is None else environ
        self.open_socket = open_socket
        self.notifier = notifier if notifier is not None else Notifier.from_environment(reactor)
        self.workers: list[_Worker] = []
        self.socket: SharedSocket | None = None
        self.run_dir = ""
        self._run_dir_lock: int | None = None
        self.url = ""
        self.metrics_url = ""
        self.stopping = False
        """Set at the first stop signal: the workers drain and none is started again."""
        self._announced = False
        self._failed_at_start: int | None = None
        self._reloading: ReloadRound | None = None
        self._ports: list[Any] = []
        self._metrics_listener: MetricsListener | None = None
        self._all_ended: Deferred[None] = Deferred()
        self._signals = SignalHandlers(reactor, {
            signal.SIGTERM: self.stop_signal, signal.SIGINT: self.stop_signal,
            signal.SIGUSR1: self.reopen_audit})
        self._hup = SignalHandlers(reactor, {signal.SIGHUP: lambda _: self.reload()})

    def privilegedStartService(self) -> None:
        """Listen (before privileges drop): the shared socket, and ``metrics.address`` when
        configured."""
        super().privilegedStartService()
        self.socket = self.open_socket(self.settings.server.address)
        scheme = "https" if self.settings.server.tls_enabled else "http"
        self.url = f"{scheme}://{self.socket.address}"
        self._listen_metrics()

    def _listen_metrics(self) -> None:
        address = self.settings.metrics.address
        if address is None:
            return
        warning = self.settings.metrics.exposure_warning()
        if warning is not None:
            self.log.warn(warning, event="metrics_exposed")
        pages = WorkerPages(self.reactor, lambda: [w.role.metrics_path for w in self.workers])
        listener = MetricsListener(self.reactor, address,
                                   workers_root(pages, self._own_metrics, self._reasons))
        self.metrics_url = listener.listen()
        self._metrics_listener = listener
        self.log.info("Metrics, /healthz and /readyz on {url}", event="metrics_listening",
                      url=self.metrics_url)

    def startService(self) -> None:
        if self.socket is None:
            self.privilegedStartService()
        super().startService()
        # The private directory and the workers' notify sockets, as the user that runs them.
        for path in remove_stale_run_dirs():
            self.log.info("Removed {path}, left by a supervisor that was killed",
                          event="stale_run_dir_removed", path=path)
        self.run_dir, self._run_dir_lock = make_run_dir()
        self.workers = [_Worker(WorkerRole(index, self.run_dir))
                        for index in range(self.settings.server.workers)]
        for worker in self.workers:
            self._ports.append(self.reactor.listenUNIXDatagram(
                worker.role.notify_path, WorkerNotices(worker.role.index, self.notice), mode=0o600))
        self._hup.install()
        self.reactor.callWhenRunning(self._signals.install)
        shared: Any = self.socket
        if shared.passed:
            self.log.info("Listening on the socket passed by the service manager, {socket}, "
                          "at {address}; server.address ({configured}) is not used",
                          event="socket_adopted", socket=shared.passed,
                          address=shared.address,
                          configured=str(self.settings.server.address))
        self.log.info("runnergw starting {count} workers on {address}",
                      event="workers_starting", count=len(self.workers),
                      address=shared.address)
        for worker in self.workers:
            self._spawn(worker)

    def _spawn(self, worker: _Worker) -> None:
        worker.restart_call = None
        worker.ready = False
        worker.reload_pending = False  # a new worker reads the settings as they are
        role = worker.role
        with contextlib.suppress(FileNotFoundError):
            os.unlink(role.metrics_path)  # left by the worker's predecessor
        protocol = WorkerProcess(role.index, lambda reason: self._ended(worker, reason))
        argv = [self.executable, "-m", "runnergw.worker",
                *role.arguments(self.settings.config_path)]
        worker.transport = self.reactor.spawnProcess(
            protocol, self.executable, argv, env=worker_environment(self.environ),
            childFDs={0: 0, 1: 1, 2: "r", LISTEN_FD: self.socket.fd,  # type: ignore[union-attr]
                      WORKER_LOCK_FD: self._run_dir_lock})
        worker.pid = worker.transport.pid
        self.log.info("Worker {worker} started (pid {pid})", event="worker_started",
                      worker=role.index, pid=worker.pid)

    def notice(self, index: int, fields: dict[str, str]) -> None:
        """A worker's notify message."""
        worker = self.workers[index]
        outcome = fields.get(RELOAD_FIELD)
        if outcome in worker.reloads:
            worker.reloads[outcome] += 1  # type: ignore[index]
        if "READY" in fields and worker.transport is not None:
            if self._reloading is not None:
                self._reloading.answered(index, outcome)
            worker.ready = True
            worker.backoff = FIRST_BACKOFF
            if worker.reload_pending:
                worker.reload_pending = False
                self._signal(worker, signal.SIGHUP)
            self._check_ready()
        if "EXTEND_TIMEOUT_USEC" in fields and self.stopping:
            self.notifier.send(f"EXTEND_TIMEOUT_USEC={fields['EXTEND_TIMEOUT_USEC']}")

    def _check_ready(self) -> None:
        if not self._announced:
            if self.stopping or not all(w.ready for w in self.workers):
                return
            self._announced = True
            self.log.info("Every worker serves on {url}", event="workers_ready", url=self.url)
            self.notifier.ready(self.describe())
            self.notifier.start(self.describe)
            return
        if self._reloading is not None and self._reloading.over:
            self._reload_over(self._reloading)

    def _reload_over(self, answers: ReloadRound) -> None:
        self._reloading = None
        answers.log_outcome(self.log)
        self.notifier.ready(self.describe())

    def describe(self) -> str:
        """The status line: how many workers serve, and the drain."""
        ready = sum(1 for w in self.workers if w.ready and w.transport is not None)
        line = f"{ready} of {len(self.workers)} workers serving on {self.url}"
        if self.stopping:
            left = sum(1 for w in self.workers if w.transport is not None)
            line += f"; draining: {left} workers left"
        return line

    def reload(self) -> None:
        """SIGHUP: every worker reloads; the service manager hears ``RELOADING=1``, then
        ``READY=1`` once every worker that served has reloaded."""
        if self.stopping:
            self.log.warn("Reload ignored: the gateway is draining", event="reload_ignored")
            return
        if self._announced:
            self._reloading = ReloadRound(w.role.index for w in self.workers
                                          if w.ready and w.transport is not None)
            self.notifier.reloading()
            if self._reloading.over:
                self._reloading = None
                self.notifier.ready(self.describe())
        for worker in self.workers:
            if worker.ready:
                self._signal(worker, signal.SIGHUP)
            elif worker.transport is not None:
                worker.reload_pending = True

    def reopen_audit(self, signum: int = signal.SIGUSR1) -> None:
        """SIGUSR1, to the workers serving: one still starting opens the file anew."""
        for worker in self.workers:
            if worker.ready:
                self._signal(worker, signum)

    def forward(self, signum: int) -> None:
        """Send ``signum`` to every worker running."""
        for worker in self.workers:
            self._signal(worker, signum)

    @staticmethod
    def _signal(worker: _Worker, signum: int) -> None:
        if worker.transport is not None:
            try:
                worker.transport.signalProcess(signum)
            except ProcessExitedAlready:
                pass

    def stop_signal(self, signum: int) -> None:
        """SIGTERM or SIGINT: every worker drains (a second one: ends what is left now);
        none is started again, and the supervisor stops once all of them ended."""
        if not self.stopping:
            self.log.info("{signal}: every worker drains", event="workers_draining",
                          signal=signal.Signals(signum).name)
            self._stop_workers()
        self.forward(signum)  # a second one: the workers end what is left at once

    def _stop_workers(self) -> None:
        self.stopping = True
        for worker in self.workers:
            if worker.restart_call is not None and worker.restart_call.active():
                worker.restart_call.cancel()
            worker.restart_call = None
        self.notifier.stopping(self.describe())
        self._check_all_ended()

    def _ended(self, worker: _Worker, reason: Failure) -> None:
        code = getattr(reason.value, "exitCode", None)
        killed = getattr(reason.value, "signal", None)
        status = code if code is not None else DRAIN_CUT
        worker.transport = None
        worker.ready = False
        if self._reloading is not None:
            self._reloading.answered(worker.role.index, None)
            self._check_ready()
        how = f"signal {killed}" if killed else f"status {code}"
        if self.stopping:
            worker.status = status
            self.log.info("Worker {worker} stopped ({how})", event="worker_stopped",
                          worker=worker.role.index, how=how, status=status)
            self._check_all_ended()
            return
        if not self._announced:
            self.log.critical("Worker {worker} ended ({how}) before it served; stopping",
                              event="worker_failed_at_start", worker=worker.role.index,
                              how=how)
            self._failed_at_start = status or FAILED_AT_START
            self._stop_workers()
            self.forward(signal.SIGTERM)
            return
        delay, worker.backoff = worker.backoff, min(worker.backoff * 2, MAX_BACKOFF)
        worker.restarts += 1
        self.log.warn("Worker {worker} (pid {pid}) ended unexpectedly ({how}); starting it "
                      "again in {delay:g} s", event="worker_died", worker=worker.role.index,
                      pid=worker.pid, how=how, delay=delay)
        worker.restart_call = self.reactor.callLater(delay, self._spawn, worker)

    def _check_all_ended(self) -> None:
        if self.stopping and all(w.transport is None for w in self.workers):
            if not self._all_ended.called:
                self._all_ended.callback(None)
                if self.running:
                    self.reactor.stop()

    def exit_status(self) -> int:
        """The worst of the workers' exit statuses (``runnergw.exit_status``)."""
        if self._failed_at_start is not None:
            return self._failed_at_start
        return max((w.status or 0 for w in self.workers), default=0)

    def _reasons(self) -> list[str]:
        reasons = ["draining"] if self.stopping else []
        reasons.extend(f"worker {w.role.index}: not serving" for w in self.workers
                       if not (w.ready and w.transport is not None))
        return reasons

    def _own_metrics(self) -> list[Metric]:
        return supervisor_families(
            [(w.role.index, w.ready and w.transport is not None, w.restarts, w.reloads)
             for w in self.workers])

    def stopService(self) -> Deferred[None]:
        """Once every worker ended (asked to drain if the stop did not come from a signal),
        stop listening and remove the private directory."""
        super().stopService()
        self._signals.uninstall()
        self._hup.uninstall()
        if not self.stopping:
            self._stop_workers()
            self.forward(signal.SIGTERM)
        self._check_all_ended()
        ended = self._all_ended if not self._all_ended.called else succeed(None)

        def close(_: object) -> Deferred[Any]:
            waits = [port.stopListening() for port in self._ports]
            self._ports = []
            if self._metrics_listener is not None:
                waits.append(self._metrics_listener.stop())
                self._metrics_listener = None
            if self.socket is not None:
                os.close(self.socket.fd)
            shutil.rmtree(self.run_dir, ignore_errors=True)
            if self._run_dir_lock is not None:
                os.close(self._run_dir_lock)
                self._run_dir_lock = None
            self.notifier.stop()
            return gatherResults([d for d in waits if d is not None])

        return ended.addCallback(close).addCallback(lambda _: None)
