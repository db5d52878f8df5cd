"""A real gateway with no client at all follows its runner's host: a host that is not
listening makes the runner not ready, and one that starts listening makes it ready again."""

from __future__ import annotations

import socket
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from tests.helpers.fake_ollama import FakeOllama
from tests.helpers.gateway import start_gateway

__all__ = ["IdleReadinessTests"]


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def _logged(testcase: TestCase, name: str) -> Deferred[dict[str, Any]]:
    """Fires with the next event ``name`` logged."""
    seen: Deferred[dict[str, Any]] = Deferred()

    def observe(event: dict[str, Any]) -> None:
        if event.get("event") == name and not seen.called:
            seen.callback(event)

    globalLogPublisher.addObserver(observe)
    testcase.addCleanup(globalLogPublisher.removeObserver, observe)
    return seen


class IdleReadinessTests(TestCase):
    """``/readyz`` tells the truth about runner hosts while no request comes."""

    timeout = 20

    async def test_host_down_then_up(self) -> None:
        """A runner whose only host is a closed port turns not ready without any request;
        once an Ollama listens on that port it is ready again, having been sent no request
        but the gateway's own checks."""
        port = _closed_port()
        ejected = _logged(self, "upstream_host_ejected")
        gateway = start_gateway(self, [{
            "name": "solo", "host": f"127.0.0.1:{port}", "path": "/ollama",
            "pool": {"ejectAfter": 2, "ejectFor": "100ms", "maxEjectFor": "100ms",
                     "probeInterval": "100ms", "psInterval": "100ms"}}], tls=False)
        readiness = gateway.service.readiness
        self.assertEqual(readiness.reasons(), [])
        await ejected
        self.assertEqual(readiness.reasons(), ["runner solo: no healthy host"])
        readmitted = _logged(self, "upstream_host_readmitted")
        fake = FakeOllama(reactor)
        listening = reactor.listenTCP(port, Site(fake), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        await readmitted
        self.assertEqual(readiness.reasons(), [])
        self.assertEqual(fake.requests, [])
        self.assertEqual({check.path for check in fake.checks}, {"/api/version"})
