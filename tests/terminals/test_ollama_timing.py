"""``Server-Timing`` on the Ollama proxy's answers: the runner's part measured from the
request written to its response head, on the gateway's clock; on a real gateway, a header a
browser's tools parse, absent once turned off."""

from __future__ import annotations

import re

from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase, TestCase

from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.chain.timing import ServerTiming
from runnergw.config.runners import RunnerSettings
from runnergw.terminals.ollama import OllamaTerminal
from runnergw.testing import RecordingClient, make_exchange
from runnergw.upstream.balancer import HostBalancer
from runnergw.upstream.connection import UpstreamConnection
from runnergw.upstream.host import HostKey, UpstreamHost
from runnergw.upstream.pool import UpstreamPool
from tests.helpers.clients import raw_exchange
from tests.helpers.ollama_proxy import start_proxy

__all__ = ["GatewayTimingTests", "TerminalTimingTests"]

_OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
_METRIC = re.compile(r"^([A-Za-z0-9_-]+);dur=(\d+\.\d{3})$")


class _OnePool:
    """A pool whose one connection is already open."""

    def __init__(self, connection: UpstreamConnection) -> None:
        self.connection = connection

    def acquire(self) -> Deferred[UpstreamConnection]:
        return succeed(self.connection)

    def release(self, connection: UpstreamConnection) -> None:
        pass


class TerminalTimingTests(SynchronousTestCase):
    """The terminal's clock readings, as the header reports them."""

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        pool = UpstreamPool(TCP4ClientEndpoint(self.clock, "127.0.0.1", 11434), self.clock,
                            name="local")
        self.connection = UpstreamConnection(pool)
        self.transport = StringTransport()
        self.connection.makeConnection(self.transport)
        runner = RunnerSettings(name="local", path="/r", host="127.0.0.1", port=11434)
        host = UpstreamHost(HostKey("http", "127.0.0.1", 11434), _OnePool(self.connection),
                            self.clock, "local")
        terminal = OllamaTerminal(runner, HostBalancer("local", [host], runner.pool), self.clock)
        route = Route("local", ("r",), (), terminal,
                      server_timing=ServerTiming(self.clock))
        self.runner = ChainRunner(Router([route], Route("", (), (), None)))
        self.client = RecordingClient()
        self.exchange = make_exchange(path="/r/api/tags")

    def test_runner_and_gateway_parts(self) -> None:
        """The runner's part runs from the request written to its head, the gateway's is
        what came before."""
        self.clock.advance(0.002)
        done = self.runner.serve(self.exchange, self.client)
        self.assertTrue(self.transport.value().startswith(b"GET /api/tags "))
        self.clock.advance(0.3)
        self.connection.dataReceived(_OK)
        self.successResultOf(done)
        self.assertEqual((self.exchange.upstream_sent_at, self.exchange.upstream_head_at),
                         (0.002, 0.302))
        self.assertEqual(self.client.headers.get_all("server-timing"),
                         ["gw;dur=2.000, upstream;dur=300.000"])

    def test_runner_that_never_answers(self) -> None:
        """A 504 for a runner that sent no head names the gateway alone."""
        done = self.runner.serve(self.exchange, self.client)
        self.clock.advance(300)
        self.successResultOf(done)
        self.assertEqual((self.client.status, self.exchange.upstream_head_at,
                          self.client.headers.get_all("server-timing")),
                         (504, None, ["gw;dur=300000.000"]))


class GatewayTimingTests(TestCase):
    """A real gateway before the fake Ollama."""

    timeout = 10

    async def _tags(self, **server: object) -> tuple[int, list[str]]:
        _, gateway = start_proxy(self, server=server or None)
        response = await raw_exchange(self, gateway, (
            b"GET /local-ollama/api/tags HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + gateway.token().encode() + b"\r\n"
            b"Connection: close\r\n\r\n"))
        return response.status, [value for name, value in response.headers
                                 if name.lower() == "server-timing"]

    async def test_header_parses(self) -> None:
        """By default the answer carries one ``Server-Timing`` with ``gw`` and ``upstream``
        metrics, each a number of milliseconds."""
        status, [value] = await self._tags()
        self.assertEqual(status, 200)
        metrics = [_METRIC.match(part.strip()) for part in value.split(",")]
        self.assertTrue(all(metrics), value)
        self.assertEqual([m.group(1) for m in metrics if m], ["gw", "upstream"])
        for match in metrics:
            assert match is not None
            self.assertGreaterEqual(float(match.group(2)), 0.0)

    async def test_turned_off(self) -> None:
        """``server.serverTiming: false``: no header at all."""
        status, values = await self._tags(serverTiming=False)
        self.assertEqual((status, values), (200, []))
