"""The routes of the ``runners`` section: one per runner, named after it, with its chain
built from settings and an Ollama terminal whose connection pool reaches the runner (in TLS,
trusting the runner's CA bundle, for an ``https`` runner)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from OpenSSL.SSL import Error as SSLError
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.route import Route, error_body_ollama
from runnergw.config.errors import ConfigError
from runnergw.filters.registry import FilterContext
from runnergw.terminals.ollama import OllamaTerminal
from runnergw.terminals.ollama_routes import build_runner_routes, runner_host_keys
from runnergw.tls.reloadable import ReloadableServerTLS
from runnergw.upstream.registry import UpstreamHosts
from tests.helpers.certs import make_ca
from tests.helpers.node_settings import Node, write_node
from tests.helpers.tls_echo import LineClient, TLSTestCase

__all__ = ["HttpsRunnerTests", "RunnerRouteTests"]


def _build(node: Node, reactor: Any, hosts: UpstreamHosts | None = None
           ) -> tuple[list[Route], list[str]]:
    """The runner routes of ``node``, and its problems as an operator reads them."""
    context = FilterContext(settings=node.settings, clock=reactor,
                            audit_log=node.parts.audit_log, verifier=node.parts.verifier)
    errors: list[ConfigError] = []
    routes = build_runner_routes(context, reactor, errors, hosts)
    return routes, [str(error).replace(str(node.path), "settings.yaml") for error in errors]


class RunnerRouteTests(SynchronousTestCase):
    """What each runner of the settings becomes."""

    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()

    def test_a_route_per_runner(self) -> None:
        """Each runner is a route on its prefix, named after it, with its own chain, body
        limit and Ollama terminal; errors have Ollama's shape."""
        node = write_node(self, runners=[
            {"name": "local", "host": "127.0.0.1:11434", "path": "/local-ollama"},
            {"name": "gpu", "host": "127.0.0.1:11435", "path": "/gpu/b",
             "filters": ["token", "audit"], "maxBodySize": "1MiB"},
        ])
        routes, errors = _build(node, self.reactor)
        self.assertEqual(errors, [])
        self.assertEqual([(r.name, r.prefix) for r in routes],
                         [("local", ("local-ollama",)), ("gpu", ("gpu", "b"))])
        self.assertEqual([[f.name for f in r.filters] for r in routes],
                         [["token", "role", "rewrite", "audit"], ["token", "audit"]])
        self.assertEqual([r.max_body_size for r in routes], [1 << 30, 1 << 20])
        for route, runner in zip(routes, node.settings.runners, strict=True):
            with self.subTest(route=route.name):
                self.assertIsInstance(route.terminal, OllamaTerminal)
                self.assertIs(route.terminal.runner, runner)
                self.assertIs(route.error_body, error_body_ollama)

    def test_server_timing(self) -> None:
        """Runner routes time their heads on the reactor's clock, as their terminal does;
        ``server.serverTiming: false`` leaves them without."""
        runners = [{"name": "local", "host": "127.0.0.1:11434", "path": "/a"}]
        [route], _ = _build(write_node(self, runners=runners), self.reactor)
        assert route.server_timing is not None
        self.assertIs(route.server_timing.clock, self.reactor)
        self.assertIs(route.terminal.clock, self.reactor)
        [route], _ = _build(write_node(self, runners=runners,
                                       server={"serverTiming": False}), self.reactor)
        self.assertIsNone(route.server_timing)

    def test_pools_named_after_their_runner(self) -> None:
        """Each runner has its own pool, named as log lines name the runner, keeping at
        most ``maxConnections`` idle connections."""
        node = write_node(self, runners=[
            {"name": "local", "host": "127.0.0.1:11434", "path": "/a", "maxConnections": 3},
            {"name": "gpu", "host": "127.0.0.1:11435", "path": "/b"},
        ])
        routes, _ = _build(node, self.reactor)
        pools = [route.terminal.hosts.hosts[0].pool for route in routes]
        self.assertEqual([(p.name, p.max_idle) for p in pools], [("local", 3), ("gpu", 64)])
        self.assertIsNot(pools[0], pools[1])

    def test_a_runner_of_several_hosts(self) -> None:
        """A runner listing ``hosts`` has a host (and connection pool) for each, in order."""
        node = write_node(self, runners=[
            {"name": "gpu", "hosts": ["127.0.0.1:11434", "[::1]:11435"], "path": "/a"}])
        [route], _ = _build(node, self.reactor)
        self.assertEqual([host.address for host in route.terminal.hosts.hosts],
                         ["127.0.0.1:11434", "[::1]:11435"])
        self.assertEqual([host.pool.name for host in route.terminal.hosts.hosts],
                         ["gpu 127.0.0.1:11434", "gpu [::1]:11435"])

    def test_hosts_kept_across_builds(self) -> None:
        """Routes built again with the same registry (settings read again) use the same
        hosts for the same addresses; the registry then closes only the hosts no runner
        names any more."""
        hosts = UpstreamHosts(self.reactor)
        before = write_node(self, runners=[
            {"name": "gpu", "hosts": ["127.0.0.1:11434", "127.0.0.1:11435"], "path": "/a"}])
        after = write_node(self, runners=[
            {"name": "gpu", "hosts": ["127.0.0.1:11435", "127.0.0.1:11436"], "path": "/a"}])
        [old], _ = _build(before, self.reactor, hosts)
        [new], _ = _build(after, self.reactor, hosts)
        self.assertIs(new.terminal.hosts.hosts[0], old.terminal.hosts.hosts[1])
        self.successResultOf(hosts.retain(runner_host_keys([new])))
        self.assertEqual(hosts.keys(), runner_host_keys([new]))
        self.assertEqual({host.port for host in hosts.keys()}, {11435, 11436})

    def test_connections_reach_the_runner(self) -> None:
        """A pool connects to its runner's address, IPv4, IPv6 or by name, within its
        connect timeout; an ``http`` runner is spoken to in the clear."""
        node = write_node(self, runners=[
            {"host": "127.0.0.1:11434", "path": "/a", "connectTimeout": "3s"},
            {"host": "[::1]:11435", "path": "/b"},
            {"host": "localhost:11436", "path": "/c"},
        ])
        routes, _ = _build(node, self.reactor)
        for route in routes:
            route.terminal.hosts.hosts[0].pool.endpoint.connect(Factory.forProtocol(Protocol))
        self.assertEqual([(host, port) for host, port, *_ in self.reactor.tcpClients],
                         [("127.0.0.1", 11434), ("::1", 11435), ("127.0.0.1", 11436)])
        self.assertEqual(self.reactor.tcpClients[0][3], 3.0)
        self.assertNotIsInstance(self.reactor.tcpClients[0][2], TLSMemoryBIOFactory)

    def test_escaped_prefix_served(self) -> None:
        """A prefix written with percent-escapes serves the requests that use them."""
        node = write_node(self, runners=[{"host": "127.0.0.1:1", "path": "/caf%C3%A9"}])
        (route,), _ = _build(node, self.reactor)
        self.assertEqual(route.prefix, ("café",))

    def test_unreadable_ca_bundle_located(self) -> None:
        """An ``https`` runner whose CA bundle cannot be read is a problem at its
        ``caPath`` line; the other runners are still built."""
        missing = Path(self.mktemp()) / "ca.pem"
        node = write_node(self, runners=[
            {"host": "127.0.0.1:1", "path": "/a"},
            {"host": "127.0.0.1:2", "path": "/b", "scheme": "https", "caPath": str(missing)},
        ])
        routes, errors = _build(node, self.reactor)
        self.assertEqual([r.name for r in routes], ["runner0"])
        self.assertEqual(len(errors), 1)
        self.assertRegex(errors[0], rf"^settings\.yaml:\d+: runners\[1\]\.caPath: "
                                    rf"{missing}: No such file or directory$")
        line = int(errors[0].split(":")[1])
        self.assertIn("caPath", node.path.read_text().splitlines()[line - 1])

    def test_filter_problems_of_every_runner(self) -> None:
        """Every runner's filter problems are listed, each at its runner."""
        node = write_node(self, runners=[
            {"host": "127.0.0.1:1", "path": "/a", "filters": ["tokn"]},
            {"host": "127.0.0.1:2", "path": "/b", "filters": ["token", {"audit": {"x": 1}}]},
        ])
        _, errors = _build(node, self.reactor)
        self.assertEqual([error.split(": ")[1] for error in errors],
                         ["runners[0].filters[0]", "runners[1].filters[1].audit"])


class HttpsRunnerTests(TLSTestCase):
    """An ``https`` runner, over a real TLS connection on 127.0.0.1."""

    async def connect_through(self, port: int, ca_path: str) -> LineClient:
        node = write_node(self, runners=[{"host": f"127.0.0.1:{port}", "path": "/",
                                          "scheme": "https", "caPath": ca_path}])
        (route,), errors = _build(node, self.reactor)
        self.assertEqual(errors, [])
        client = LineClient()
        self.addCleanup(lambda: client.transport.loseConnection() if client.transport
                        else None)
        endpoint = route.terminal.hosts.hosts[0].pool.endpoint
        await endpoint.connect(Factory.forProtocol(lambda: client))
        await client.handshake
        return client

    async def test_trusts_its_ca_bundle(self) -> None:
        """A runner whose certificate the configured CA bundle signs is reached in TLS."""
        issued = self.issue("runner")
        port = await self.serve(ReloadableServerTLS(str(issued.fullchain_path),
                                                    str(issued.key_path)))
        client = await self.connect_through(port, str(issued.ca_path))
        self.assertEqual(await client.request(b"ping"), b"echo ping")
        self.assertEqual(client.peer_fingerprint(), issued.fingerprint)

    async def test_refuses_another_ca(self) -> None:
        """A runner whose certificate another CA signed is refused: no request reaches it."""
        issued = self.issue("runner")
        port = await self.serve(ReloadableServerTLS(str(issued.fullchain_path),
                                                    str(issued.key_path)))
        other = make_ca(str(Path(self.mktemp()) / "other"))
        with self.assertRaises(SSLError):
            await self.connect_through(port, str(other.ca_path))
