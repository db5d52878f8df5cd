"""Filter names in settings → filter objects; a dotted path names a filter class elsewhere."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.python.reflect import namedAny

from runnergw.audit_log import AuditLog
from runnergw.chain.hooks import FILTER_HOOKS, check_filter
from runnergw.config.errors import ConfigError
from runnergw.config.filters import FilterSpec
from runnergw.config.options import read_options
from runnergw.config.reader import ErrorSink, MapReader
from runnergw.config.settings import Settings
from runnergw.filters.access import AccessFilter
from runnergw.filters.audit import AuditFilter
from runnergw.filters.concurrency import ConcurrencyFilter
from runnergw.filters.media_limits import MediaLimitsFilter
from runnergw.filters.rate_limit import RateLimitFilter
from runnergw.filters.rewrite import RewriteFilter
from runnergw.filters.role import RoleFilter
from runnergw.filters.token import TokenFilter
from runnergw.filters.usage import UsageFilter
from runnergw.filters.websaas import WebSaasTokenFilter
from runnergw.limits.parts import LimitParts
from runnergw.tokens.verifier import TokenVerifier
from runnergw.websaas.signing import ResponseSigner
from runnergw.websaas.tokens import SaasTokenVerifier

__all__ = ["BUILTIN_FILTERS", "FilterContext", "build_chain", "build_filter", "filter_class"]


@attrs.frozen
class FilterContext:
    """What a filter's ``from_settings`` may use: the settings, the gateway's shared parts,
    and the settings of the route being built."""

    settings: Settings
    clock: IReactorTime
    audit_log: AuditLog
    verifier: TokenVerifier | None = None
    saas_verifier: SaasTokenVerifier | None = None
    signer: ResponseSigner | None = None
    jobs: Any = None
    """The command routes' shared job parts (launcher, ffprobe, environment), if any."""
    hosts: Any = None
    """The runner hosts kept across reloads (``UpstreamHosts``), if any."""
    route: Any = None
    """The route's settings: ``RunnerSettings``, or a pipeline route with its descriptor."""
    limits: LimitParts | None = None
    """The limit state, quota days and usage ledger, when a ``roles`` section exists."""


BUILTIN_FILTERS: Mapping[str, type] = {
    "token": TokenFilter,
    "websaas": WebSaasTokenFilter,
    "role": RoleFilter,
    "access": AccessFilter,
    "rateLimit": RateLimitFilter,
    "concurrency": ConcurrencyFilter,
    "usage": UsageFilter,
    "rewrite": RewriteFilter,
    "mediaLimits": MediaLimitsFilter,
    "audit": AuditFilter,
}


def filter_class(name: str) -> type:
    """The class a settings name stands for: built in, or imported by its dotted path.

    Raises:
        ValueError: unknown name, import failure, not a class, or a class defining a public
            method that is no hook (the message says which).
    """
    cls = BUILTIN_FILTERS.get(name)
    if cls is None:
        if "." not in name:
            known = ", ".join(BUILTIN_FILTERS)
            raise ValueError(f'unknown filter "{name}" (built in: {known}; or a dotted path '
                             "to a filter class)")
        try:
            cls = namedAny(name)
        except (AttributeError, ImportError, ValueError) as e:
            raise ValueError(f'cannot import filter "{name}": {e}') from e
        if not isinstance(cls, type):
            raise ValueError(f'"{name}" is not a class (a filter is a class with hooks)')
    check_filter(cls)
    if not any(callable(getattr(cls, hook, None)) for hook in FILTER_HOOKS):
        raise ValueError(f'"{name}" defines none of the hooks {", ".join(FILTER_HOOKS)}')
    return cls


def _options_path(spec: FilterSpec) -> str:
    """The YAML path of a filter's options (a dotted name is quoted, as it is one key)."""
    return f'{spec.path}["{spec.name}"]' if "." in spec.name else f"{spec.path}.{spec.name}"


def build_filter(spec: FilterSpec, context: FilterContext, sink: ErrorSink) -> Any:
    """Build one filter with its options; None when its options have problems (recorded).

    Raises:
        ValueError: the filter cannot be built (unknown, missing what it needs, or with an
            ``Options`` class settings cannot fill).
    """
    cls = filter_class(spec.name)
    options_class = getattr(cls, "Options", None)
    section = MapReader(spec.options, _options_path(spec), spec.origin, sink)
    options = None
    if options_class is not None:
        before = len(sink.errors)
        try:
            options = read_options(options_class, section)
        except TypeError as e:
            raise ValueError(f"the options of {spec.name} cannot be read from settings: "
                             f"{e}") from e
        if options is None or len(sink.errors) > before:
            return None
    elif spec.options:
        sink.add(spec.origin, _options_path(spec), f"the {spec.name} filter takes no options")
        return None
    build = getattr(cls, "from_settings", None)
    if build is not None:
        return build(options, context)
    return cls(options) if options_class is not None else cls()


def build_chain(specs: Sequence[FilterSpec], context: FilterContext) -> tuple[tuple[Any, ...],
                                                                               list[ConfigError]]:
    """Build a route's filters, in order, with every problem found (located)."""
    sink = ErrorSink()
    filters: list[Any] = []
    built_specs: list[FilterSpec] = []
    placed: set[str] = set()
    for spec in specs:
        # A filter that failed to build still counts as placed, so that its problem is
        # reported once, not again as a missing dependency of the next one.
        before = set(placed)
        placed |= _names_of(spec)
        try:
            built = build_filter(spec, context, sink)
        except ValueError as e:
            sink.add(spec.origin, spec.path, str(e))
            continue
        if built is None:
            continue
        after_any = getattr(built, "after_any", ())
        if after_any and not set(after_any) & before:
            sink.add(spec.origin, spec.path,
                     f"{spec.name} must come after one of {', '.join(after_any)}")
        filters.append(built)
        built_specs.append(spec)
    _check_done_order(filters, built_specs, sink)
    return tuple(filters), sink.errors


def _check_done_order(filters: list[Any], specs: list[FilterSpec], sink: ErrorSink) -> None:
    """A filter's ``done_before`` names filters whose ``done`` must run after its own (they
    read what it leaves): since ``done`` runs in reverse chain order, those come earlier."""
    names = [getattr(step, "name", None) for step in filters]
    for index, step in enumerate(filters):
        for name in getattr(step, "done_before", ()):
            if name in names[index + 1:]:
                sink.add(specs[index].origin, specs[index].path,
                         f"{specs[index].name} must come after {name}: {name} records what "
                         f"{specs[index].name} counts once the exchange is over, and the "
                         "filters' done hooks run in reverse chain order")


def _names_of(spec: FilterSpec) -> set[str]:
    """The names an item answers to for ``after_any``: as written, and its class's ``name``
    (the token filter named by its dotted path is ``token``)."""
    try:
        cls = filter_class(spec.name)
    except ValueError:
        return {spec.name}
    name = getattr(cls, "name", None)
    return {spec.name, name} if isinstance(name, str) else {spec.name}
