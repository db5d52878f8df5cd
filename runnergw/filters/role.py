"""The ``role`` filter: the caller's role, from the verified token's claims, and who may call."""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Identity, Reject
from runnergw.chain.interfaces import IFilter
from runnergw.config.roles import RoleSettings
from runnergw.config.runners import RunnerSettings

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["DEFAULT_ROLE", "RoleFilter", "role_rules", "subject_key"]

DEFAULT_ROLE = "user"
"""The role of a token without a role claim when the settings name no other."""

_RULES = "role.rules"
"""``exchange.metadata`` key of the caller's ``RoleSettings``."""


def role_rules(exchange: Exchange) -> RoleSettings | None:
    """The rules of the caller's role, once the role filter found them (None without a
    ``roles`` section: no rules, as runner-gateway had)."""
    return exchange.metadata.get(_RULES)


def subject_key(exchange: Exchange) -> str:
    """Whom limits and usage are counted for: the token's ``sub``, or for a token without
    one (runner-gateway's carry none) the token's own id, so that each token is counted on
    its own."""
    identity = exchange.identity
    if identity is None:
        return ""
    return identity.subject or identity.token_id


def _claimed_role(claims: Any, known: Mapping[str, RoleSettings]) -> str | None:
    """``role`` when the claims have it, else the first known entry of a ``roles`` list
    (the first entry when no role is known here, so that the refusal names it)."""
    if not isinstance(claims, Mapping):
        return None
    role = claims.get("role")
    if isinstance(role, str):
        return role
    roles = claims.get("roles")
    if isinstance(roles, list):
        names = [name for name in roles if isinstance(name, str)]
        for name in names:
            if name in known:
                return name
        return names[0] if names else None
    return None


@implementer(IFilter)
class RoleFilter:
    """Gives every authenticated exchange a role; refuses unauthenticated ones and, when the
    route lists allowed roles (a model's ``allowed_roles``), every other role with 403.

    On Ollama routes with a ``roles`` section, the role comes from the ``role`` claim or the
    first known entry of a ``roles`` list claim, else it is ``policy.defaultRole``; a role the
    section does not define is refused (403), never taken as "no limits". Its rules are then
    what the ``access``, ``rateLimit``, ``concurrency`` and ``usage`` filters apply.
    """

    name = "role"

    after_any = ("token", "websaas")
    """The chain must verify the caller first: one of these comes earlier."""

    def __init__(self, allowed_roles: Collection[str] | None = None,
                 roles: Mapping[str, RoleSettings] | None = None,
                 default_role: str = DEFAULT_ROLE) -> None:
        self.allowed_roles = None if allowed_roles is None else frozenset(allowed_roles)
        self.roles = dict(roles or {})
        self.default_role = default_role

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> RoleFilter:
        """The route's allowed roles (a model descriptor's ``allowed_roles``), if any; on
        Ollama routes, the ``roles`` section."""
        if isinstance(context.route, RunnerSettings) and context.settings.roles:
            return cls(None, context.settings.roles, context.settings.policy.default_role)
        return cls(getattr(context.route, "allowed_roles", None))

    def request_headers(self, exchange: Exchange) -> None:
        """Settle the role and check it against the route's list or the roles section."""
        identity = exchange.identity
        if identity is None:
            raise Reject(401, "authentication required", reason="no identity before role")
        role = identity.role
        if self.roles:
            role = _claimed_role(identity.claims, self.roles)
        if role is None:
            role = self.default_role
        if role != identity.role:
            identity = Identity(identity.subject, role, identity.claims, identity.token_kind,
                                identity.token_id)
            exchange.identity = identity
        if self.roles:
            rules = self.roles.get(role)
            if rules is None:
                raise Reject(403, f'role "{role}" is not known to this gateway',
                             reason=f"role {role} unknown")
            exchange.metadata[_RULES] = rules
        if self.allowed_roles is not None and role not in self.allowed_roles:
            raise Reject(403, "Your plan does not include this model",
                         reason=f"role {role} not allowed")
