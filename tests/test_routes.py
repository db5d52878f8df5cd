"""Assembling every route: each terminal kind builds its own, two routes never share a
prefix, every problem is told at once, and unknown paths get a 404 in the node's shape."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.config.errors import ConfigError, ConfigErrors, Origin
from runnergw.filters.audit import AuditFilter
from runnergw.filters.registry import FilterContext
from runnergw.routes import ROUTE_KINDS, build_router
from runnergw.terminals.commands.routes import build_pipeline_routes
from runnergw.terminals.commands.terminal import CommandTerminal
from runnergw.terminals.ollama import OllamaTerminal
from runnergw.terminals.ollama_routes import build_runner_routes
from runnergw.testing import RecordingClient, make_exchange
from tests.helpers.command_gateway import example
from tests.helpers.node_settings import Node, write_node

__all__ = ["BuildRouterTests", "FallbackTests", "RouteKindTests"]

_RUNNER = {"name": "local", "host": "127.0.0.1:11434", "path": "/ollama"}


class _StubTerminal:
    def handle(self, exchange: Any, client: Any) -> None:
        pass

    def stop(self) -> Any:
        return succeed(None)


def _refused(testcase: SynchronousTestCase, node: Node, **options: Any) -> list[str]:
    """The problems building ``node``'s routes raises, as an operator reads them."""
    with testcase.assertRaises(ConfigErrors) as caught:
        build_router(node.settings, node.parts, MemoryReactorClock(), **options)
    return [str(error).replace(str(node.path), "settings.yaml")
            for error in caught.exception.errors]


class BuildRouterTests(SynchronousTestCase):
    """Routes of every kind, from the settings."""

    def test_routes_of_every_kind(self) -> None:
        """Runners become Ollama routes and models command routes, side by side."""
        node = write_node(self, runners=[_RUNNER],
                          descriptors={"text-stats": example("text-stats")})
        router = build_router(node.settings, node.parts, MemoryReactorClock())
        self.assertEqual({route.name: type(route.terminal) for route in router.routes},
                         {"local": OllamaTerminal, "text-stats": CommandTerminal})
        self.assertEqual(router.match("/ollama/api/tags")[0].name, "local")
        self.assertEqual(router.match("/text-stats/")[0].name, "text-stats")

    def test_kinds_in_order(self) -> None:
        """Runner prefixes are built first, then command models."""
        self.assertEqual(tuple(ROUTE_KINDS), (build_runner_routes, build_pipeline_routes))

    def test_runner_and_model_on_one_prefix(self) -> None:
        """A runner on a model's endpoint is refused, naming both, located in the
        settings; nothing is served."""
        node = write_node(self, runners=[{"host": "127.0.0.1:1", "path": "/text-stats"}],
                          descriptors={"text-stats": example("text-stats")})
        errors = _refused(self, node)
        line = node.settings.pipelines.origin.line  # the pipelines section, where it starts
        self.assertEqual(errors, [f'settings.yaml:{line}: pipelines: "text-stats" serves '
                                  '/text-stats, which is already the prefix of runner0'])

    def test_every_problem_of_every_kind(self) -> None:
        """A runner's filter problem and the command routes' chain problem are listed
        together, each located."""
        node = write_node(self, runners=[{"host": "127.0.0.1:1", "filters": ["tokn"]}],
                          descriptors={"text-stats": example("text-stats")},
                          pipelines={"filters": ["role", "audit"]})
        errors = _refused(self, node)
        self.assertEqual([error.split(": ")[1] for error in errors],
                         ["runners[0].filters[0]", "pipelines.filters",
                          "pipelines.filters[0]"])


class RouteKindTests(SynchronousTestCase):
    """Terminal kinds given to ``build_router``: a kind is a function of the shared parts."""

    def setUp(self) -> None:
        self.node = write_node(self, runners=[_RUNNER])
        self.reactor = MemoryReactorClock()

    def test_kind_given_the_shared_parts(self) -> None:
        """A kind is called with the settings, the clock and the loaded keys and audit
        trail, and its routes are served."""
        seen: list[tuple[FilterContext, Any]] = []

        def kind(context: FilterContext, reactor: Any, errors: list[ConfigError]) -> list[Route]:
            seen.append((context, reactor))
            return [Route("stub", ("stub",), (), _StubTerminal())]

        router = build_router(self.node.settings, self.node.parts, self.reactor, kinds=[kind])
        [(context, reactor)] = seen
        self.assertIs(reactor, self.reactor)
        self.assertIs(context.clock, self.reactor)
        self.assertIs(context.settings, self.node.settings)
        self.assertIs(context.audit_log, self.node.parts.audit_log)
        self.assertIs(context.verifier, self.node.parts.verifier)
        self.assertEqual([route.name for route in router.routes], ["stub"])

    def test_problems_of_every_kind_at_once(self) -> None:
        """Each kind's problems are gathered; none stops the others from being built."""

        def failing(message: str) -> Any:
            def kind(context: FilterContext, reactor: Any,
                     errors: list[ConfigError]) -> list[Route]:
                errors.append(ConfigError(Origin("settings.yaml", 1), "kind", message))
                return []
            return kind

        errors = _refused(self, self.node, kinds=[failing("one"), failing("two")])
        self.assertEqual(errors, ["settings.yaml:1: kind: one", "settings.yaml:1: kind: two"])

    def test_later_route_on_a_taken_prefix(self) -> None:
        """The route of a later kind on a prefix already served is refused; the first one
        keeps it."""

        def kind(name: str) -> Any:
            def build(context: FilterContext, reactor: Any,
                      errors: list[ConfigError]) -> list[Route]:
                return [Route(name, ("same",), (), _StubTerminal())]
            return build

        errors = _refused(self, self.node, kinds=[kind("first"), kind("second")])
        self.assertEqual(len(errors), 1)
        self.assertIn('"second" serves /same, which is already the prefix of first', errors[0])


class FallbackTests(SynchronousTestCase):
    """Paths no route serves."""

    def answer(self, node: Node) -> tuple[Router, RecordingClient]:
        router = build_router(node.settings, node.parts, MemoryReactorClock())
        client = RecordingClient()
        self.successResultOf(ChainRunner(router).serve(make_exchange("GET", "/nowhere"),
                                                       client))
        return router, client

    def test_ollama_shape_with_runners(self) -> None:
        """A node with runners answers 404 as Ollama does, ``{"error"}``."""
        router, client = self.answer(write_node(self, runners=[_RUNNER]))
        self.assertEqual((client.status, client.body),
                         (404, b'{"error": "no runner serves this path"}'))
        fallback = router.fallback
        self.assertEqual((fallback.name, fallback.prefix, fallback.terminal), ("", (), None))
        self.assertEqual([type(f) for f in fallback.filters], [AuditFilter])

    def test_detail_shape_on_a_pipelines_node(self) -> None:
        """A node serving only models answers 404 as the FastAPI node did, ``{"detail"}``."""
        _, client = self.answer(write_node(self, descriptors={"text-stats":
                                                              example("text-stats")}))
        self.assertEqual((client.status, client.body),
                         (404, b'{"detail": "no runner serves this path"}'))

    def test_ollama_shape_on_a_mixed_node(self) -> None:
        """A node with runners and models keeps Ollama's shape for unknown paths."""
        _, client = self.answer(write_node(self, runners=[_RUNNER], descriptors={
            "text-stats": example("text-stats")}))
        self.assertEqual(client.body, b'{"error": "no runner serves this path"}')

    def test_server_timing_where_runners_are_served(self) -> None:
        """A 404 of a node with runners carries ``Server-Timing`` as its runners' answers
        do; a node serving only models, like the FastAPI node, sends none."""
        _, client = self.answer(write_node(self, runners=[_RUNNER]))
        self.assertTrue(client.headers.get("server-timing", "").startswith("gw;dur="))
        _, client = self.answer(write_node(self, descriptors={"text-stats":
                                                              example("text-stats")}))
        self.assertIsNone(client.headers.get("server-timing"))

