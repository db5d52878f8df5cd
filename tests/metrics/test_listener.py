"""The metrics listener on a real socket: scraped over HTTP, parsed by Prometheus's parser."""

from __future__ import annotations

import socket

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from runnergw.config.reader import ListenAddress
from runnergw.health import Readiness
from runnergw.metrics.listener import MetricsListener
from runnergw.metrics.pages import metrics_root

__all__ = ["MetricsListenerTests"]


class MetricsListenerTests(TestCase):
    """``MetricsListener``: binds, serves the pages, stops; a taken port is fatal."""

    timeout = 30

    def setUp(self) -> None:
        self.registry = CollectorRegistry()
        Counter("scrapes_seen", "A counter to find", registry=self.registry).inc(2)
        self.readiness = Readiness()
        self.pool = HTTPConnectionPool(reactor, persistent=False)
        self.agent = Agent(reactor, pool=self.pool)

    def listener(self, port: int = 0) -> MetricsListener:
        return MetricsListener(reactor, ListenAddress("127.0.0.1", port),
                               metrics_root(self.registry, self.readiness))

    async def get(self, url: str) -> tuple[int, bytes]:
        response = await self.agent.request(b"GET", url.encode(),
                                            Headers({b"Connection": [b"close"]}))
        return response.code, await readBody(response)

    def test_scraped(self) -> None:
        """``GET /metrics`` answers what prometheus-client's own parser reads."""
        listener = self.listener()
        url = listener.listen()
        self.addCleanup(listener.stop)
        self.assertTrue(url.startswith("http://127.0.0.1:"))

        async def scrape() -> None:
            status, body = await self.get(url + "/metrics")
            self.assertEqual(status, 200)
            families = {family.name: family
                        for family in text_string_to_metric_families(body.decode())}
            self.assertEqual(families["scrapes_seen"].samples[0].value, 2.0)
            status, body = await self.get(url + "/readyz")
            self.assertEqual((status, body), (200, b"ready\n"))
            status, _ = await self.get(url + "/nothing")
            self.assertEqual(status, 404)
        return ensureDeferred(scrape())

    def test_port_taken_is_fatal(self) -> None:
        """A port another program holds stops the start, naming ``metrics.address``."""
        holder = socket.socket()
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        self.addCleanup(holder.close)
        port = holder.getsockname()[1]
        with self.assertRaises(SystemExit) as caught:
            self.listener(port).listen()
        self.assertIn(f"cannot listen on metrics.address 127.0.0.1:{port}", str(caught.exception))

    def test_stop(self) -> None:
        """Once stopped, the port is free again."""
        listener = self.listener()
        port = int(listener.listen().rsplit(":", 1)[1])

        def rebind(_: object) -> None:
            again = self.listener(port)
            again.listen()
            self.addCleanup(again.stop)
        return listener.stop().addCallback(rebind)
