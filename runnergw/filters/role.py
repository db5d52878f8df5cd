"""The ``role`` filter: the caller's role, from the verified token's claims, and who may call."""

from __future__ import annotations

from collections.abc import Collection

import attrs

from runnergw.chain.exchange import Exchange, Reject
from runnergw.chain.filter import Filter

__all__ = ["RoleFilter", "DEFAULT_ROLE"]

DEFAULT_ROLE = "user"
"""The role of a token without a ``role`` claim (runner-gateway's tokens carry none)."""


class RoleFilter(Filter):
    """Gives every authenticated exchange a role; refuses unauthenticated ones and, when the
    route lists allowed roles (a model's ``allowed_roles``), every other role with 403.

    Runs after the token filter. Role policies (allowed models and paths, limits) build on this.
    """

    name = "role"

    def __init__(self, allowed_roles: Collection[str] | None = None) -> None:
        self.allowed_roles = None if allowed_roles is None else frozenset(allowed_roles)

    def request(self, exchange: Exchange) -> None:
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
