"""Filter names in settings → filter objects: built-in names, dotted paths, options, order."""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

import attrs
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.audit_log import AuditLog
from runnergw.config.errors import Origin
from runnergw.config.filters import FilterSpec
from runnergw.config.reader import ErrorSink
from runnergw.config.roles import RoleSettings
from runnergw.config.settings import Settings
from runnergw.config.yamlfile import MarkedMap
from runnergw.filters.access import AccessFilter
from runnergw.filters.audit import AuditFilter
from runnergw.filters.concurrency import ConcurrencyFilter
from runnergw.filters.media_limits import MediaLimitsFilter
from runnergw.filters.rate_limit import RateLimitFilter
from runnergw.filters.registry import (
    BUILTIN_FILTERS,
    FilterContext,
    build_chain,
    build_filter,
    filter_class,
)
from runnergw.filters.rewrite import RewriteFilter
from runnergw.filters.role import RoleFilter
from runnergw.filters.token import TokenFilter
from runnergw.filters.usage import UsageFilter
from runnergw.filters.websaas import WebSaasTokenFilter
from runnergw.limits.days import QuotaDays
from runnergw.limits.local import LocalLimitState
from runnergw.limits.parts import LimitParts
from tests.http.support import token_verifier

__all__ = ["BuildChainTests", "BuildFilterTests", "FilterClassTests"]

_BUILTINS = ", ".join(BUILTIN_FILTERS)


class Stamp:
    """A filter from elsewhere with options and no ``from_settings``."""

    name = "stamp"

    @attrs.frozen
    class Options:
        header: str = "X-Stamp"
        value: str = "1"

    def __init__(self, options: Stamp.Options) -> None:
        self.options = options

    def response_headers(self, exchange: Any) -> None:
        exchange.response_headers.set(self.options.header, self.options.value)


class Plain:
    """A filter from elsewhere without options."""

    name = "plain"

    def request_headers(self, exchange: Any) -> None:
        pass


class Typo:
    """A filter from elsewhere with a misspelt hook."""

    name = "typo"

    def request_header(self, exchange: Any) -> None:
        pass


class Loose:
    """A filter whose Options has a field settings cannot hold."""

    name = "loose"

    @attrs.frozen
    class Options:
        handler: Any = None

    def __init__(self, options: Any) -> None:
        self.options = options

    def done(self, exchange: Any) -> None:
        pass


class NoHooks:
    """A class that is no filter at all."""

    name = "nothing"


def helper() -> None:
    """A function, not a filter class."""


_ORIGIN = Origin("settings.yaml", 12)


def _spec(name: str, options: dict[str, Any] | None = None, index: int = 0) -> FilterSpec:
    return FilterSpec(name, MarkedMap(options) if options is not None else None,
                      f"runners[0].filters[{index}]", _ORIGIN)


def _chain(*items: str | tuple[str, dict[str, Any]]) -> tuple[FilterSpec, ...]:
    specs = []
    for index, item in enumerate(items):
        name, options = (item, None) if isinstance(item, str) else item
        specs.append(_spec(name, options, index))
    return tuple(specs)


class _RegistryTestCase(SynchronousTestCase):

    def context(self, **parts: Any) -> FilterContext:
        audit_log = AuditLog("")
        self.addCleanup(audit_log.close)
        values: dict[str, Any] = {"settings": Settings(files=("settings.yaml",)),
                                  "clock": Clock(), "audit_log": audit_log,
                                  "verifier": token_verifier()}
        values.update(parts)
        return FilterContext(**values)


class FilterClassTests(SynchronousTestCase):
    """``filter_class``: which class a settings name stands for."""

    def test_builtin_names(self) -> None:
        """The built-in names stand for the gateway's filters."""
        self.assertEqual(dict(BUILTIN_FILTERS), {
            "token": TokenFilter, "websaas": WebSaasTokenFilter, "role": RoleFilter,
            "access": AccessFilter, "rateLimit": RateLimitFilter,
            "concurrency": ConcurrencyFilter, "usage": UsageFilter,
            "rewrite": RewriteFilter, "mediaLimits": MediaLimitsFilter, "audit": AuditFilter})
        for name, cls in BUILTIN_FILTERS.items():
            with self.subTest(name=name):
                self.assertIs(filter_class(name), cls)
                self.assertEqual(cls.name, name)

    def test_unknown_name_lists_the_builtins(self) -> None:
        """A name that is no built-in and no dotted path is refused, listing the names."""
        error = self.assertRaises(ValueError, filter_class, "tokn")
        self.assertEqual(str(error), 'unknown filter "tokn" (built in: token, websaas, role, '
                                     'access, rateLimit, concurrency, usage, rewrite, '
                                     'mediaLimits, audit; or a dotted path to a filter class)')

    def test_dotted_path(self) -> None:
        """A dotted path imports the filter class."""
        self.assertIs(filter_class(f"{__name__}.Stamp"), Stamp)

    def test_dotted_path_not_found(self) -> None:
        """A dotted path that cannot be imported says so."""
        for name in ("no_such_package.Filter", f"{__name__}.Missing"):
            with self.subTest(name=name):
                error = self.assertRaises(ValueError, filter_class, name)
                self.assertTrue(str(error).startswith(f'cannot import filter "{name}": '))

    def test_dotted_path_to_a_function(self) -> None:
        """A dotted path to something other than a class is refused."""
        for name in (f"{__name__}.helper", "runnergw.filters"):
            with self.subTest(name=name):
                error = self.assertRaises(ValueError, filter_class, name)
                self.assertEqual(str(error),
                                 f'"{name}" is not a class (a filter is a class with hooks)')

    def test_typo_refused_at_load(self) -> None:
        """A class with a misspelt hook is refused when the settings are loaded."""
        error = self.assertRaises(ValueError, filter_class, f"{__name__}.Typo")
        self.assertIn("request_header()", str(error))

    def test_class_without_hooks(self) -> None:
        """A class that defines no hook at all is refused."""
        error = self.assertRaises(ValueError, filter_class, f"{__name__}.NoHooks")
        self.assertIn("defines none of the hooks request_headers", str(error))


class BuildFilterTests(_RegistryTestCase):
    """``build_filter``: one filter with its options."""

    def test_options_read(self) -> None:
        """A filter with Options is built with the options given."""
        sink = ErrorSink()
        built = build_filter(_spec(f"{__name__}.Stamp", {"value": "2"}), self.context(), sink)
        self.assertEqual(sink.errors, [])
        self.assertEqual(built.options, Stamp.Options(value="2"))

    def test_options_defaulted(self) -> None:
        """A filter with Options given none gets the defaults."""
        built = build_filter(_spec(f"{__name__}.Stamp"), self.context(), ErrorSink())
        self.assertEqual(built.options, Stamp.Options())

    def test_option_problems(self) -> None:
        """Options a filter does not take are reported at their path; nothing is built."""
        sink = ErrorSink()
        built = build_filter(_spec(f"{__name__}.Stamp", {"colour": "red"}), self.context(),
                             sink)
        self.assertIsNone(built)
        self.assertEqual([(e.path, e.message) for e in sink.errors], [
            (f'runners[0].filters[0]["{__name__}.Stamp"].colour',
             "unknown setting (check the spelling; see the settings reference)")])

    def test_options_to_a_filter_without_any(self) -> None:
        """Options given to a filter that has no Options are refused, located."""
        for name in (f"{__name__}.Plain", "audit"):
            with self.subTest(name=name):
                sink = ErrorSink()
                self.assertIsNone(build_filter(_spec(name, {"x": 1}), self.context(), sink))
                self.assertEqual([(e.origin, e.path, e.message) for e in sink.errors], [
                    (_ORIGIN, f'runners[0].filters[0]["{name}"]' if "." in name
                     else f"runners[0].filters[0].{name}",
                     f"the {name} filter takes no options")])

    def test_unreadable_options_class(self) -> None:
        """An Options class settings cannot fill is reported at the filter, not raised."""
        for options in (None, {"handler": "x"}):
            with self.subTest(options=options):
                _, errors = build_chain((_spec(f"{__name__}.Loose", options),), self.context())
                self.assertEqual([(e.path, e.message) for e in errors], [
                    ("runners[0].filters[0]",
                     f"the options of {__name__}.Loose cannot be read from settings: "
                     "Loose.Options.handler: an options field of type typing.Any cannot be "
                     "read from settings")])

    def test_without_options(self) -> None:
        """A filter without Options nor from_settings is built with no argument."""
        self.assertIsInstance(build_filter(_spec(f"{__name__}.Plain"), self.context(),
                                           ErrorSink()), Plain)

    def test_from_settings_refusal(self) -> None:
        """A built-in missing what it needs says what that is."""
        error = self.assertRaises(ValueError, build_filter, _spec("token"),
                                  self.context(verifier=None), ErrorSink())
        self.assertEqual(str(error),
                         "the token filter needs paseto.publicPath or paseto.secretKey")


class BuildChainTests(_RegistryTestCase):
    """``build_chain``: a route's filters, in order, with every problem."""

    def messages(self, specs: tuple[FilterSpec, ...], **parts: Any) -> list[tuple[str, str]]:
        _, errors = build_chain(specs, self.context(**parts))
        return [(error.path, error.message) for error in errors]

    def test_built_in_order(self) -> None:
        """A valid chain is built in the order written."""
        filters, errors = build_chain(_chain("token", "role", "rewrite", "audit"),
                                      self.context())
        self.assertEqual(errors, [])
        self.assertEqual([f.name for f in filters], ["token", "role", "rewrite", "audit"])

    def test_usage_before_audit(self) -> None:
        """``usage`` after ``audit``: the audit line would be written before usage settles
        its counts (``done`` runs in reverse order), so the order is refused."""
        roles = {"user": RoleSettings("user")}
        settings = Settings(files=("settings.yaml",), roles=roles)
        limits = LimitParts(LocalLimitState(Clock()), QuotaDays(ZoneInfo("UTC"), Clock()), None)
        self.assertEqual(self.messages(_chain("token", "role", "usage", "audit"),
                                       settings=settings, limits=limits), [
            ("runners[0].filters[2]", "usage must come after audit: audit records what usage "
             "counts once the exchange is over, and the filters' done hooks run in reverse "
             "chain order")])
        self.assertEqual(self.messages(_chain("audit", "token", "role", "usage"),
                                       settings=settings, limits=limits), [])

    def test_role_before_token(self) -> None:
        """role placed before token is refused: the caller would not be known yet."""
        self.assertEqual(self.messages(_chain("role", "token")), [
            ("runners[0].filters[0]", "role must come after one of token, websaas")])

    def test_role_without_authentication(self) -> None:
        """role alone is refused."""
        self.assertEqual(self.messages(_chain("audit", "role")), [
            ("runners[0].filters[1]", "role must come after one of token, websaas")])

    def test_failing_token_reported_once(self) -> None:
        """A token filter that cannot be built is one problem, not also one for role."""
        self.assertEqual(self.messages(_chain("token", "role"), verifier=None), [
            ("runners[0].filters[0]",
             "the token filter needs paseto.publicPath or paseto.secretKey")])

    def test_token_by_its_dotted_path(self) -> None:
        """The token filter named by its dotted path counts as token for role."""
        self.assertEqual(self.messages(_chain("runnergw.filters.token.TokenFilter", "role")),
                         [])

    def test_every_problem(self) -> None:
        """Every item's problem is reported, each at its own path."""
        self.assertEqual(self.messages(_chain("tokn", (f"{__name__}.Stamp", {"x": 1}),
                                              f"{__name__}.Typo", "audit")), [
            ("runners[0].filters[0]", f'unknown filter "tokn" (built in: {_BUILTINS}; '
             'or a dotted path to a filter class)'),
            (f'runners[0].filters[1]["{__name__}.Stamp"].x',
             "unknown setting (check the spelling; see the settings reference)"),
            ("runners[0].filters[2]",
             f"{__name__}.Typo defines request_header(), which no hook is called; the hooks "
             "are request_headers, request_body, response_headers, response_line, "
             "response_chunk, response_body, done (make helpers private: _name)"),
        ])
