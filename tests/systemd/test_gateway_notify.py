"""The gateway service under systemd: what it tells the service manager when it starts,
reloads and stops. (``test_twistd_notify.py`` checks the same with a real twistd.)"""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from runnergw.service import GatewayService
from runnergw.systemd.notify import Notifier
from tests.helpers.node_settings import write_node
from tests.helpers.notify_socket import ServiceManagerSocket

__all__ = ["ReadyTests", "ReloadNotifyTests", "StopNotifyTests"]

_RUNNER = {"host": "127.0.0.1:1", "path": "/ollama"}


class _Limits:
    """Stands for the limit parts: the ledger opens when the test says so."""

    def __init__(self) -> None:
        self.opened: Deferred[None] = Deferred()

    def start(self) -> Deferred[None]:
        return self.opened

    def stop(self) -> Deferred[None]:
        return succeed(None)


class _ServiceCase(SynchronousTestCase):
    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        self.manager = ServiceManagerSocket(self)
        self.reactor = MemoryReactorClock()

    def service(self, watchdog: float | None = None) -> GatewayService:
        node = write_node(self, runners=[_RUNNER])
        notifier = Notifier(self.manager.name, self.reactor, watchdog=watchdog,
                            monotonic=lambda: 42)
        service = GatewayService(node.settings, node.parts, self.reactor, notifier=notifier)
        self.addCleanup(lambda: service.running and service.stopService())
        return service

    def url(self, service: GatewayService) -> str:
        """Where the service says it listens (the memory reactor's port is 0.0.0.0:0)."""
        self.assertEqual(service.url, "http://0.0.0.0:0")
        return service.url


class ReadyTests(_ServiceCase):
    """``READY=1``: once the gateway can serve."""

    def test_ready_once_listening(self) -> None:
        """A started gateway says it is ready, and where it serves."""
        service = self.service()
        service.startService()
        self.assertEqual(self.manager.messages(), [
            f"READY=1\nSTATUS=serving on {self.url(service)}: 0 open connections, "
            "0 exchanges under way, 0 jobs running"])

    def test_ready_waits_for_the_usage_ledger(self) -> None:
        """With quotas, ready comes only once the usage ledger is open; until then /readyz
        says the gateway is starting."""
        service = self.service()
        limits = service.limits = _Limits()  # type: ignore[assignment]
        service.startService()
        self.assertEqual(self.manager.messages(), [])
        self.assertEqual(service.readiness.reasons(), ["starting"])
        limits.opened.callback(None)
        self.assertEqual(service.readiness.reasons(), [])
        self.assertEqual(self.manager.messages(), [
            f"READY=1\nSTATUS=serving on {self.url(service)}: 0 open connections, "
            "0 exchanges under way, 0 jobs running"])

    def test_never_ready_without_the_ledger(self) -> None:
        """A ledger that cannot be opened stops the gateway, which is never said ready."""
        service = self.service()
        limits = service.limits = _Limits()  # type: ignore[assignment]
        service.startService()
        limits.opened.errback(Failure(OSError("read-only file system")))
        self.assertTrue(self.reactor.hasStopped)
        self.assertEqual(self.manager.messages(), [])

    def test_status_counts_connections(self) -> None:
        """The status line follows the open connections."""
        service = self.service()
        service.startService()
        self.manager.messages()
        self.addCleanup(service.factory.connections.clear)
        service.factory.connections.update({object(), object()})  # type: ignore[arg-type]
        self.reactor.advance(5)
        self.assertEqual(self.manager.messages(), [
            f"STATUS=serving on {self.url(service)}: 2 open connections, "
            "0 exchanges under way, 0 jobs running"])

    def test_watchdog_started_with_ready(self) -> None:
        """With a watchdog, the first ping follows ready, the next one its interval later."""
        service = self.service(watchdog=10)
        service.startService()
        self.assertEqual(self.manager.messages()[1:], ["WATCHDOG=1"])
        self.reactor.advance(10)
        self.assertEqual(self.manager.messages(), ["WATCHDOG=1"])


class ReloadNotifyTests(_ServiceCase):
    """SIGHUP under systemd."""

    def test_reloading_then_ready(self) -> None:
        """A reload is announced with the monotonic time it began, and ends with ready."""
        service = self.service()
        service.startService()
        self.manager.messages()
        service.reload()
        self.assertEqual(self.manager.messages(), [
            "RELOADING=1\nMONOTONIC_USEC=42\nSTATUS=reloading",
            f"READY=1\nSTATUS=serving on {self.url(service)}: 0 open connections, "
            "0 exchanges under way, 0 jobs running"])

    def test_no_ready_from_a_reload_before_start_finished(self) -> None:
        """A SIGHUP while the ledger still opens does not make the gateway look ready."""
        service = self.service()
        service.limits = _Limits()  # type: ignore[assignment]
        service.startService()
        service.reload()
        self.assertEqual(self.manager.messages(), [])


class StopNotifyTests(_ServiceCase):
    """Stopping under systemd."""

    def test_stopping_first(self) -> None:
        """A stop is announced before anything is closed, with the connections it ends."""
        service = self.service()
        service.startService()
        self.manager.messages()
        seen: list[Any] = []
        self.patch(service.factory, "close_connections",
                   lambda: seen.append(self.manager.messages()))
        self.successResultOf(service.stopService())
        self.assertEqual(seen, [["STOPPING=1\nSTATUS=stopping: 0 open connections"]])

    def test_watchdog_ends_once_stopped(self) -> None:
        """The watchdog is fed while the stop waits for the terminals, and no longer after."""
        service = self.service(watchdog=10)
        service.startService()
        stopping: Deferred[None] = Deferred()
        [route] = service.router.routes
        self.patch(route.terminal, "stop", lambda: stopping)
        stopped = service.stopService()
        self.manager.messages()
        self.reactor.advance(10)
        self.assertEqual(self.manager.messages(), ["WATCHDOG=1"])
        stopping.callback(None)
        self.successResultOf(stopped)
        self.reactor.advance(60)
        self.assertEqual(self.manager.messages(), [])
