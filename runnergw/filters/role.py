"""The ``role`` filter: the caller's role, from the verified token's claims, and who may call."""

from __future__ import annotations

from collections.abc import Collection
from typing import TYPE_CHECKING

import attrs
from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Reject
from runnergw.chain.interfaces import IFilter

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["RoleFilter", "DEFAULT_ROLE"]

DEFAULT_ROLE = "user"
"""The role of a token without a ``role`` claim (runner-gateway's tokens carry none)."""


@implementer(IFilter)
class RoleFilter:
    """Gives every authenticated exchange a role; refuses unauthenticated ones and, when the
    route lists allowed roles (a model's ``allowed_roles``), every other role with 403.

    Runs after the token filter. Role policies (allowed models and paths, limits) build on this.
    """

    name = "role"

    after_any = ("token", "websaas")
    """The chain must verify the caller first: one of these comes earlier."""

    def __init__(self, allowed_roles: Collection[str] | None = None) -> None:
        self.allowed_roles = None if allowed_roles is None else frozenset(allowed_roles)

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> RoleFilter:
        """The route's allowed roles (a model descriptor's ``allowed_roles``), if any."""
        return cls(getattr(context.route, "allowed_roles", None))

    def request_headers(self, exchange: Exchange) -> None:
        """Settle the role, defaulting to ``user``, and check it against the route's list."""
        identity = exchange.identity
        if identity is None:
            raise Reject(401, "authentication required", reason="no identity before role")
        if identity.role is None:
            identity = attrs.evolve(identity, role=DEFAULT_ROLE)
            exchange.identity = identity
        if self.allowed_roles is not None and identity.role not in self.allowed_roles:
            raise Reject(403, "Your plan does not include this model",
                         reason=f"role {identity.role} not allowed")
