"""The ``websaas`` filter: the SaaS server token and the user token must both be valid."""

from __future__ import annotations

from typing import TYPE_CHECKING

from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Identity, Reject
from runnergw.chain.interfaces import IFilter
from runnergw.websaas.tokens import SaasTokenError, SaasTokenVerifier

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["WebSaasTokenFilter"]

_CHALLENGE = (("WWW-Authenticate", "Bearer"),)


@implementer(IFilter)
class WebSaasTokenFilter:
    """Checks ``Authorization: Bearer <server JWT>`` and ``X-User-Token`` and records the user.

    Refusals are 401 with the verifier's detail, which the route renders in FastAPI's
    ``{"detail": …}`` shape. The tokens never leave this filter: not in errors, logs or the
    audit trail.
    """

    name = "websaas"

    def __init__(self, verifier: SaasTokenVerifier) -> None:
        self.verifier = verifier

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> WebSaasTokenFilter:
        """Needs the SaaS public key of the ``pipelines`` section."""
        if context.saas_verifier is None:
            raise ValueError("the websaas filter needs pipelines.saasPublicKeyPath")
        return cls(context.saas_verifier)

    def request_headers(self, exchange: Exchange) -> None:
        """Verify both tokens, or refuse with 401."""
        try:
            caller = self.verifier.verify(
                exchange.headers.get("authorization"), exchange.headers.get("x-user-token")
            )
        except SaasTokenError as e:
            raise Reject(e.status, e.detail, headers=_CHALLENGE,
                         reason=f"websaas token {e.code}") from None
        exchange.identity = Identity(
            subject=caller.subject,
            role=caller.role,
            claims=caller.user_claims,
            token_kind="websaas",
        )
