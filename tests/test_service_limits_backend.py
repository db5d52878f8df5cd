"""The gateway service with ``limits.backend: redis`` and nothing for it to limit."""

from __future__ import annotations

import signal
from typing import Any

from twisted.internet.testing import MemoryReactorClock
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from runnergw.service import GatewayService
from tests.helpers.node_settings import write_node

__all__ = ["UnusedBackendTests"]


class UnusedBackendTests(SynchronousTestCase):
    """An operator who set the Redis backend without roles is told it does nothing."""

    def setUp(self) -> None:
        previous = signal.getsignal(signal.SIGHUP)
        self.addCleanup(signal.signal, signal.SIGHUP, previous)
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def start(self, extra: dict[str, Any]) -> None:
        node = write_node(self, runners=[{"host": "127.0.0.1:1", "path": "/ollama"}],
                          extra=extra)
        service = GatewayService(node.settings, node.parts, MemoryReactorClock())
        service.startService()
        self.addCleanup(service.stopService)

    def warnings(self) -> list[dict[str, Any]]:
        return [e for e in self.events if e.get("event") == "limits_backend_unused"]

    def test_redis_without_roles_warned(self) -> None:
        """``limits.backend: redis`` without a ``roles`` section: one warning at start."""
        self.start({"limits": {"backend": "redis", "nodes": 2}})
        self.assertEqual(len(self.warnings()), 1)

    def test_local_backend_quiet(self) -> None:
        """The default backend without roles: no warning."""
        self.start({})
        self.assertEqual(self.warnings(), [])
