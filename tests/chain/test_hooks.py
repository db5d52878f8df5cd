"""Finding a filter's hooks, and refusing a filter class with a misspelt one."""

from __future__ import annotations

from typing import Any

import attrs
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.hooks import FILTER_HOOKS, ChainHooks, FilterClassError, check_filter

__all__ = ["ChainHooksTests", "CheckFilterTests"]


class _Typo:
    name = "typo"

    def requst_headers(self, exchange: Any) -> None:
        """Meant to be ``request_headers``."""


class _Fine:
    """Every kind of member a filter may have besides its hooks."""

    name = "fine"
    after_any = ("token",)
    limits = {"a": 1}

    @attrs.frozen
    class Options:
        per_minute: int = 60

    def __init__(self, options: Any = None) -> None:
        self.options = options

    @classmethod
    def from_settings(cls, options: Any, context: Any) -> _Fine:
        return cls(options)

    @property
    def label(self) -> str:
        return self.name

    def request_headers(self, exchange: Any) -> None:
        self._helper()

    async def response_line(self, exchange: Any, line: bytes) -> None:
        return None

    def done(self, exchange: Any) -> None:
        pass

    def stop(self) -> None:
        pass

    def _helper(self) -> None:
        pass

    @staticmethod
    def _static_helper() -> None:
        pass


class CheckFilterTests(SynchronousTestCase):
    """``check_filter``: a public method that is no hook would never be called."""

    def test_typo_refused(self) -> None:
        """A misspelt hook is refused, and the message names it and lists the real hooks."""
        error = self.assertRaises(FilterClassError, check_filter, _Typo)
        message = str(error)
        self.assertIn("requst_headers()", message)
        self.assertIn(f"{__name__}._Typo", message)
        self.assertIn(", ".join(FILTER_HOOKS), message)
        self.assertIn("make helpers private", message)

    def test_instance_checked_by_its_class(self) -> None:
        """An instance is checked like its class."""
        self.assertRaises(FilterClassError, check_filter, _Typo())

    def test_every_other_member_fine(self) -> None:
        """Private helpers, name, Options, from_settings, stop, class attributes and
        properties are all allowed."""
        check_filter(_Fine)
        check_filter(_Fine())

    def test_inherited_typo_refused(self) -> None:
        """A misspelt hook inherited from a base class is refused too."""

        class Child(_Typo):
            def request_headers(self, exchange: Any) -> None:
                pass

        self.assertIn("requst_headers()", str(self.assertRaises(FilterClassError,
                                                                check_filter, Child)))

    def test_public_static_and_class_methods_refused(self) -> None:
        """Public static and class methods that are no hook are refused, each named."""

        class Helpers:
            name = "helpers"

            @staticmethod
            def parse(text: str) -> str:
                return text

            @classmethod
            def build(cls) -> Helpers:
                return cls()

        message = str(self.assertRaises(FilterClassError, check_filter, Helpers))
        self.assertIn("parse(), build()", message)

    def test_misspelt_async_hook(self) -> None:
        """A coroutine with a misspelt hook name is refused like a plain method."""

        class Slow:
            name = "slow"

            async def response_header(self, exchange: Any) -> None:
                pass

        self.assertIn("response_header()", str(self.assertRaises(FilterClassError,
                                                                 check_filter, Slow)))


class _Journal:
    """Defines every hook; ``ChainHooks`` only looks at which ones are there."""

    def __init__(self, name: str, hooks: tuple[str, ...]) -> None:
        self.name = name
        for hook in hooks:
            setattr(self, hook, lambda *args: None)


class ChainHooksTests(SynchronousTestCase):
    """Which filters each hook calls, in which order."""

    def test_order(self) -> None:
        """Request hooks in chain order; response_headers and done in reverse."""
        every = ("request_headers", "request_body", "response_headers", "done")
        a, b, c = (_Journal(name, every) for name in "abc")
        hooks = ChainHooks.of((a, b, c))
        self.assertEqual(hooks.request_headers, (a, b, c))
        self.assertEqual(hooks.request_body, (a, b, c))
        self.assertEqual(hooks.response_headers, (c, b, a))
        self.assertEqual(hooks.done, (c, b, a))

    def test_only_filters_with_the_hook(self) -> None:
        """A filter appears only under the hooks it defines."""
        auth = _Journal("auth", ("request_headers",))
        audit = _Journal("audit", ("done",))
        rewrite = _Journal("rewrite", ("request_headers", "response_headers"))
        hooks = ChainHooks.of((auth, rewrite, audit))
        self.assertEqual(hooks.request_headers, (auth, rewrite))
        self.assertEqual(hooks.request_body, ())
        self.assertEqual(hooks.response_headers, (rewrite,))
        self.assertEqual(hooks.done, (audit,))

    def test_typo_refused_when_the_route_is_built(self) -> None:
        """A filter with a misspelt hook cannot be put in a chain."""
        self.assertRaises(FilterClassError, ChainHooks.of, (_Journal("a", ()), _Typo()))
