"""The ``role`` filter: the caller's role, from the verified token's claims."""

from __future__ import annotations

import attrs

from runnergw.pipeline.exchange import Exchange, Reject
from runnergw.pipeline.filter import Filter

__all__ = ["RoleFilter", "DEFAULT_ROLE"]

DEFAULT_ROLE = "user"
"""The role of a token without a ``role`` claim (runner-gateway's tokens carry none)."""


class RoleFilter(Filter):
    """Gives every authenticated exchange a role; refuses unauthenticated ones.

    Runs after ``token``. Role policies (allowed models and paths, limits) build on this.
    """

    name = "role"

    def request(self, exchange: Exchange) -> None:
        """Settle the role, defaulting to ``user``."""
        identity = exchange.identity
        if identity is None:
            raise Reject(401, "authentication required", reason="no identity before role")
        if identity.role is None:
            exchange.identity = attrs.evolve(identity, role=DEFAULT_ROLE)
