"""What a filter and a terminal must provide: every built-in filter and both terminal kinds,
as the settings build them, verify against ``IFilter`` and ``ITerminal``."""

from __future__ import annotations

from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyClass, verifyObject

from runnergw.chain.hooks import FILTER_HOOKS, check_filter
from runnergw.chain.interfaces import IFilter, ITerminal
from runnergw.chain.route import Router
from runnergw.filters.registry import BUILTIN_FILTERS
from runnergw.routes import build_router
from runnergw.terminals.commands.terminal import CommandTerminal
from runnergw.terminals.ollama import OllamaTerminal
from runnergw.testing import Answer, CannedTerminal
from tests.helpers.command_gateway import example
from tests.helpers.node_settings import write_node

__all__ = ["FilterInterfaceTests", "TerminalInterfaceTests"]


def _whole_node(testcase: SynchronousTestCase) -> Router:
    """The routes of a node with a runner and a model whose chain has every built-in filter
    (audio-gain has role limits: its chain includes mediaLimits; a roles section gives the
    runner the role filters)."""
    node = write_node(testcase, runners=[{"host": "127.0.0.1:11434", "path": "/ollama"}],
                      descriptors={"audio-gain": example("audio-gain")},
                      extra={"roles": {"user": {}}})
    return build_router(node.settings, node.parts, MemoryReactorClock())


class FilterInterfaceTests(SynchronousTestCase):
    """``IFilter``: a name, and the hooks it needs, no others."""

    def test_every_builtin_filter_class(self) -> None:
        """Each built-in filter class declares ``IFilter``, defines only hooks, and goes by
        the name settings give it."""
        for name, cls in BUILTIN_FILTERS.items():
            with self.subTest(filter=name):
                self.assertTrue(verifyClass(IFilter, cls))
                check_filter(cls)
                self.assertEqual(cls.name, name)
                self.assertTrue(any(callable(getattr(cls, hook, None))
                                    for hook in FILTER_HOOKS))

    def test_every_built_filter_provides_ifilter(self) -> None:
        """The filters built from settings for runner and command routes (the fallback's
        audit filter too) verify against ``IFilter``; every built-in one is among them."""
        router = _whole_node(self)
        filters = [f for route in (*router.routes, router.fallback) for f in route.filters]
        for built in filters:
            with self.subTest(filter=built.name):
                self.assertTrue(verifyObject(IFilter, built))
        self.assertEqual({f.name for f in filters}, set(BUILTIN_FILTERS))

    def test_every_hook_is_documented(self) -> None:
        """The interface tells a filter author about every hook the chain calls."""
        for hook in FILTER_HOOKS:
            with self.subTest(hook=hook):
                self.assertIn(f"``{hook}(exchange", IFilter.__doc__ or "")


class TerminalInterfaceTests(SynchronousTestCase):
    """``ITerminal``: ``handle`` an exchange, ``stop`` when the gateway stops."""

    def test_both_terminal_kinds(self) -> None:
        """A runner route ends in an ``OllamaTerminal``, a model route in a
        ``CommandTerminal``; both verify against ``ITerminal``."""
        router = _whole_node(self)
        kinds = {}
        for route in router.routes:
            with self.subTest(route=route.name):
                self.assertTrue(verifyObject(ITerminal, route.terminal))
                kinds[route.name] = type(route.terminal)
        self.assertEqual(kinds, {"runner0": OllamaTerminal, "audio-gain": CommandTerminal})
        self.assertIsNone(router.fallback.terminal)

    def test_canned_terminal(self) -> None:
        """The runner stand-in that filter authors test with is a terminal like the real
        ones."""
        self.assertTrue(verifyObject(ITerminal, CannedTerminal(Answer())))
