"""The supervisor of ``server.workers`` on a simulated reactor: when systemd hears READY,
what happens to each signal, and which worker is started again when."""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
from pathlib import Path
from typing import Any

import attrs
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.testing import EventLoggingObserver, MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.load import load_settings
from runnergw.systemd.notify import Notifier
from runnergw.workers.listening_socket import SharedSocket
from runnergw.workers.role import LISTEN_FD
from runnergw.workers.run_dir import WORKER_LOCK_FD, make_run_dir
from runnergw.workers.supervisor import WorkerSupervisor

__all__ = ["StaleRunDirTests", "SupervisorNotifyTests", "SupervisorRestartTests",
           "SupervisorSignalTests", "SupervisorStopTests", "SupervisorWorkerTests"]


@attrs.define
class _Process:
    """A spawned worker: what it was started with and the signals it was sent."""

    protocol: Any
    argv: list[str]
    env: dict[str, str]
    child_fds: dict[int, Any]
    pid: int
    signals: list[Any] = attrs.field(factory=list)

    def signalProcess(self, signum: Any) -> None:
        self.signals.append(signum)

    def exit(self, code: int | None = 0, signum: int | None = None) -> None:
        reason = ProcessDone(0) if code == 0 else ProcessTerminated(code, signum)
        self.protocol.processEnded(Failure(reason))


class _Port:
    def stopListening(self) -> None:
        return None


class _Reactor(MemoryReactorClock):
    """Records the workers spawned."""

    def __init__(self) -> None:
        super().__init__()
        self.processes: list[_Process] = []
        self.stopped = False

    def spawnProcess(self, protocol: Any, executable: str, args: list[str], env: Any,
                     childFDs: Any = None, **_: Any) -> _Process:
        process = _Process(protocol, list(args), dict(env), dict(childFDs),
                           1000 + len(self.processes))
        self.processes.append(process)
        return process

    def listenUNIXDatagram(self, *args: Any, **kwargs: Any) -> _Port:
        return _Port()

    def stop(self) -> None:
        self.stopped = True


class _Notifier(Notifier):
    """Keeps each message sent, as its list of fields."""

    def __init__(self, clock: Any) -> None:
        super().__init__("/run/notify", clock, watchdog=10.0)
        self.sent: list[list[str]] = []

    def send(self, *fields: str) -> bool:
        self.sent.append(list(fields))
        return True

    def heads(self) -> list[str]:
        return [fields[0] for fields in self.sent]


class _SupervisorCase(SynchronousTestCase):

    def setUp(self) -> None:
        directory = Path(self.mktemp())
        directory.mkdir(parents=True)
        config = directory / "settings.yaml"
        config.write_text("runners:\n  - host: 127.0.0.1:11434\nserver:\n  workers: 2\n"
                          "metrics:\n  address: off\n")
        self.settings = load_settings(str(config), environ={}, dotenv_path=None)
        self.reactor = _Reactor()
        self.notifier = _Notifier(self.reactor)
        # Stands for the listening socket: the supervisor closes it as it stops.
        self.fd = os.open(os.devnull, os.O_RDONLY)
        self.supervisor = WorkerSupervisor(
            self.settings, self.reactor, self.notifier, executable="/usr/bin/python3",
            environ={"PATH": "/usr/bin", "NOTIFY_SOCKET": "/run/notify",
                     "WATCHDOG_USEC": "1000000", "LISTEN_FDS": "1"},
            open_socket=lambda address: SharedSocket(self.fd, "127.0.0.1", 8443))
        self.supervisor.startService()
        self.addCleanup(self._stop)

    def _stop(self) -> None:
        stopped = self.supervisor.stopService()
        for process in self.reactor.processes:
            if process.protocol is not None and self._alive(process):
                process.exit(0)
        self.successResultOf(stopped)
        shutil.rmtree(self.supervisor.run_dir, ignore_errors=True)

    def _alive(self, process: _Process) -> bool:
        return any(w.transport is process for w in self.supervisor.workers)

    def ready(self, *indexes: int) -> None:
        for index in indexes:
            self.supervisor.notice(index, {"READY": "1", "STATUS": "serving"})


class SupervisorWorkerTests(_SupervisorCase):
    """How the workers are started."""

    def test_one_process_per_worker(self) -> None:
        """``workers: 2`` starts two workers of the same interpreter, each told its index,
        the shared socket passed as descriptor 3."""
        self.assertEqual(len(self.reactor.processes), 2)
        for index, process in enumerate(self.reactor.processes):
            self.assertEqual(process.argv[:3], ["/usr/bin/python3", "-m", "runnergw.worker"])
            self.assertEqual(process.argv[process.argv.index("--index") + 1], str(index))
            self.assertEqual(process.child_fds[LISTEN_FD], self.fd)

    def test_run_dir_lock_inherited(self) -> None:
        """Each worker inherits the lock of the private directory (descriptor 4): the
        directory is not taken for stale while a worker of a killed supervisor drains."""
        for process in self.reactor.processes:
            self.assertEqual(process.child_fds[WORKER_LOCK_FD],
                             self.supervisor._run_dir_lock)

    def test_environment_without_service_manager(self) -> None:
        """Workers do not talk to systemd nor take its sockets: its variables are left out
        of their environment; the rest is kept."""
        env = self.reactor.processes[0].env
        for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "LISTEN_FDS"):
            self.assertNotIn(name, env)
        self.assertEqual(env["PATH"], "/usr/bin")


class SupervisorNotifyTests(_SupervisorCase):
    """What systemd hears."""

    def test_ready_after_every_worker(self) -> None:
        """READY=1 is sent once both workers said they serve, not after the first."""
        self.ready(0)
        self.assertEqual(self.notifier.heads(), [])
        self.ready(1)
        self.assertEqual(self.notifier.sent[0][0], "READY=1")
        self.assertTrue(self.notifier.sent[0][1].startswith(
            "STATUS=2 of 2 workers serving on http://127.0.0.1:8443"))

    def test_watchdog_once_ready(self) -> None:
        """The supervisor feeds systemd's watchdog from READY on, not before."""
        self.reactor.advance(30)
        self.assertNotIn("WATCHDOG=1", self.notifier.heads())
        self.ready(0, 1)
        self.reactor.advance(10)
        self.assertIn("WATCHDOG=1", self.notifier.heads())

    def test_reload_ready_after_every_worker(self) -> None:
        """SIGHUP: RELOADING=1 at once and SIGHUP to both workers; READY=1 once both
        reloaded."""
        self.ready(0, 1)
        self.supervisor.reload()
        self.assertEqual(self.notifier.heads()[-1], "RELOADING=1")
        self.assertEqual([p.signals for p in self.reactor.processes],
                         [[signal.SIGHUP], [signal.SIGHUP]])
        self.ready(1)
        self.assertEqual(self.notifier.heads()[-1], "RELOADING=1")
        self.ready(0)
        self.assertEqual(self.notifier.heads()[-1], "READY=1")

    def test_reload_refused_reported_per_worker(self) -> None:
        """A worker refusing the reload is not hidden: the log names what each worker did
        (no "every worker reloaded"), and the supervisor's metrics count it."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.ready(0, 1)
        self.supervisor.reload()
        self.supervisor.notice(0, {"READY": "1", "STATUS": "serving", "RELOAD": "ok"})
        self.supervisor.notice(1, {"READY": "1", "STATUS": "serving", "RELOAD": "refused"})
        self.assertEqual(self.notifier.heads()[-1], "READY=1")
        [event] = [e for e in observer if e.get("event", "").startswith("workers_reload")]
        self.assertEqual((event["event"], event["workers"], event["refused"]),
                         ("workers_reload_refused",
                          "worker 0 reloaded, worker 1 refused the reload", [1]))
        families = {f.name: f for f in self.supervisor._own_metrics()}
        self.assertEqual(sorted((s.labels["worker"], s.labels["result"], s.value)
                                for s in families["runnergw_worker_reloads"].samples),
                         [("0", "ok", 1), ("0", "refused", 0),
                          ("1", "ok", 0), ("1", "refused", 1)])

    def test_reload_taken_by_every_worker(self) -> None:
        """Every worker answering ``ok``: one "every worker reloaded" event naming each."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.ready(0, 1)
        self.supervisor.reload()
        for index in (0, 1):
            self.supervisor.notice(index, {"READY": "1", "RELOAD": "ok"})
        [event] = [e for e in observer if e.get("event", "").startswith("workers_reload")]
        self.assertEqual((event["event"], event["workers"]),
                         ("workers_reloaded", "worker 0 reloaded, worker 1 reloaded"))

    def test_worker_ended_during_reload_reported(self) -> None:
        """A worker that died before it answered is said so, not counted as reloaded."""
        observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.ready(0, 1)
        self.supervisor.reload()
        self.supervisor.notice(0, {"READY": "1", "RELOAD": "ok"})
        self.reactor.processes[1].exit(None, signal.SIGKILL)
        [event] = [e for e in observer if e.get("event", "").startswith("workers_reload")]
        self.assertEqual((event["event"], event["workers"]),
                         ("workers_reload_refused",
                          "worker 0 reloaded, worker 1 ended before it answered"))

    def test_extend_timeout_forwarded_while_stopping(self) -> None:
        """A draining worker's request for more stop time reaches systemd."""
        self.ready(0, 1)
        self.supervisor.stop_signal(signal.SIGTERM)
        self.supervisor.notice(0, {"EXTEND_TIMEOUT_USEC": "45000000"})
        self.assertEqual(self.notifier.sent[-1], ["EXTEND_TIMEOUT_USEC=45000000"])


class SupervisorSignalTests(_SupervisorCase):
    """Signals passed on to the workers."""

    def test_usr1_forwarded(self) -> None:
        """SIGUSR1 (reopen the audit file) reaches every worker serving, not one still
        starting (it opens the file anew)."""
        self.ready(0)
        self.supervisor.reopen_audit()
        self.assertEqual([p.signals for p in self.reactor.processes], [[signal.SIGUSR1], []])

    def test_reload_while_starting_passed_on_once_serving(self) -> None:
        """A SIGHUP while a worker starts reaches it once it serves (its default action
        would end it before)."""
        self.ready(0)
        self.supervisor.reload()
        self.assertEqual([p.signals for p in self.reactor.processes], [[signal.SIGHUP], []])
        self.ready(1)
        self.assertEqual(self.reactor.processes[1].signals, [signal.SIGHUP])

    def test_reload_ignored_while_draining(self) -> None:
        """A SIGHUP once the drain began is not passed on."""
        self.ready(0, 1)
        self.supervisor.stop_signal(signal.SIGTERM)
        self.supervisor.reload()
        self.assertEqual([p.signals for p in self.reactor.processes],
                         [[signal.SIGTERM], [signal.SIGTERM]])


class SupervisorStopTests(_SupervisorCase):
    """SIGTERM: every worker drains, the supervisor waits for all and exits with the
    worst status."""

    def test_stop_waits_for_every_worker(self) -> None:
        """STOPPING=1 at once; the reactor stops only once both workers ended."""
        self.ready(0, 1)
        self.supervisor.stop_signal(signal.SIGTERM)
        self.assertEqual(self.notifier.heads()[-1], "STOPPING=1")
        self.reactor.processes[0].exit(0)
        self.assertFalse(self.reactor.stopped)
        self.reactor.processes[1].exit(0)
        self.assertTrue(self.reactor.stopped)
        self.assertEqual(self.supervisor.exit_status(), 0)

    def test_worst_status(self) -> None:
        """A worker whose drain had to cut exchanges (1) makes the supervisor exit 1."""
        self.ready(0, 1)
        self.supervisor.stop_signal(signal.SIGTERM)
        self.reactor.processes[0].exit(1)
        self.reactor.processes[1].exit(0)
        self.assertEqual(self.supervisor.exit_status(), 1)

    def test_no_restart_while_draining(self) -> None:
        """A worker ending during the drain is not started again."""
        self.ready(0, 1)
        self.supervisor.stop_signal(signal.SIGTERM)
        self.reactor.processes[0].exit(0)
        self.reactor.advance(60)
        self.assertEqual(len(self.reactor.processes), 2)

    def test_worker_failing_at_start_stops_all(self) -> None:
        """A worker that ends before it ever served (its settings or ledger refused) stops
        the whole gateway, with its status: a broken start is not retried forever."""
        self.reactor.processes[0].exit(78)
        self.assertEqual(self.reactor.processes[1].signals, [signal.SIGTERM])
        self.reactor.processes[1].exit(0)
        self.assertTrue(self.reactor.stopped)
        self.assertEqual(self.supervisor.exit_status(), 78)


class SupervisorRestartTests(_SupervisorCase):
    """A worker that dies while the gateway serves is started again."""

    def test_restarted_after_backoff(self) -> None:
        """Killed, the worker is started again after 1 s, not before."""
        self.ready(0, 1)
        self.reactor.processes[1].exit(None, signal.SIGKILL)
        self.reactor.advance(0.9)
        self.assertEqual(len(self.reactor.processes), 2)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 3)
        self.assertIn("1", self.reactor.processes[2].argv)

    def test_backoff_grows(self) -> None:
        """A worker dying again before it serves waits twice as long the next time."""
        self.ready(0, 1)
        self.reactor.processes[1].exit(1)
        self.reactor.advance(1)
        self.reactor.processes[2].exit(1)
        self.reactor.advance(1.9)
        self.assertEqual(len(self.reactor.processes), 3)
        self.reactor.advance(0.1)
        self.assertEqual(len(self.reactor.processes), 4)

    def test_backoff_reset_once_serving(self) -> None:
        """Once the restarted worker serves, its next death waits 1 s again."""
        self.ready(0, 1)
        self.reactor.processes[1].exit(1)
        self.reactor.advance(1)
        self.ready(1)
        self.reactor.processes[2].exit(1)
        self.reactor.advance(1)
        self.assertEqual(len(self.reactor.processes), 4)


class StaleRunDirTests(_SupervisorCase):
    """The private directory a supervisor killed with -9 left behind."""

    def setUp(self) -> None:
        self.parent = Path(self.mktemp()).resolve()
        self.parent.mkdir()
        self.patch(tempfile, "tempdir", str(self.parent))
        self.stale, fd = make_run_dir()
        os.close(fd)  # its supervisor and workers are gone
        self.observer = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        super().setUp()

    def test_removed_at_start(self) -> None:
        """A new supervisor removes it and says so; its own directory is made beside."""
        self.assertFalse(os.path.exists(self.stale))
        self.assertEqual([e["path"] for e in self.observer
                          if e.get("event") == "stale_run_dir_removed"], [self.stale])
        self.assertTrue(self.supervisor.run_dir.startswith(str(self.parent)))
