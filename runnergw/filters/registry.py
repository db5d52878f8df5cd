"""Filter names in settings → filter objects; a dotted path names a filter from another package."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.python.reflect import namedAny

from runnergw.audit_log import AuditLog
from runnergw.config.runners import RewriteSettings
from runnergw.config.settings import Settings
from runnergw.filters.audit import AuditFilter
from runnergw.filters.rewrite import RewriteFilter
from runnergw.filters.role import RoleFilter
from runnergw.filters.token import TokenFilter
from runnergw.filters.websaas import WebSaasTokenFilter
from runnergw.chain.interfaces import IFilter
from runnergw.tokens.verifier import TokenVerifier
from runnergw.websaas.tokens import SaasTokenVerifier

__all__ = ["FilterContext", "BUILTIN_FILTERS", "build_filter"]


@attrs.frozen
class FilterContext:
    """What a filter factory may use: the settings and the shared gateway parts."""

    settings: Settings
    clock: IReactorTime
    audit_log: AuditLog
    verifier: TokenVerifier | None
    saas_verifier: SaasTokenVerifier | None = None


FilterFactory = Callable[[FilterContext, Any], Any]
"""``factory(context, route_settings)``: ``RunnerSettings`` or ``PipelineRoute``."""


def _token(context: FilterContext, route: Any) -> TokenFilter:
    if context.verifier is None:
        raise ValueError("the token filter needs paseto.publicPath or paseto.secretKey")
    return TokenFilter(context.verifier)


def _websaas(context: FilterContext, route: Any) -> WebSaasTokenFilter:
    if context.saas_verifier is None:
        raise ValueError("the websaas filter needs pipelines.saasPublicKeyPath")
    return WebSaasTokenFilter(context.saas_verifier)


BUILTIN_FILTERS: Mapping[str, FilterFactory] = {
    "token": _token,
    "websaas": _websaas,
    "role": lambda context, route: RoleFilter(getattr(route, "allowed_roles", None)),
    "rewrite": lambda context, route: RewriteFilter(getattr(route, "rewrite", RewriteSettings())),
    "audit": lambda context, route: AuditFilter(context.audit_log),
}


def build_filter(name: str, context: FilterContext, runner: Any) -> IFilter:
    """Build the filter ``name`` for ``runner``.

    A name with a dot is imported (``mypackage.filters.Quota``) and called as
    ``factory(context, runner)``; it must return an object providing ``IFilter``.

    Raises:
        ValueError: unknown name, import failure, or not a filter (the message says which).
    """
    factory = BUILTIN_FILTERS.get(name)
    if factory is None:
        if "." not in name:
            known = ", ".join(BUILTIN_FILTERS)
            raise ValueError(f'unknown filter "{name}" (built in: {known}; or a dotted path)')
        try:
            factory = namedAny(name)
        except (AttributeError, ImportError, ValueError) as e:
            raise ValueError(f'cannot import filter "{name}": {e}') from e
    result = factory(context, runner)
    if not IFilter.providedBy(result):
        raise ValueError(f'"{name}" did not produce an object providing IFilter')
    return result
