"""The ``concurrency`` filter: requests a subject may have under way at once, by role."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Reject
from runnergw.chain.interfaces import IFilter
from runnergw.filters.role import role_rules, subject_key
from runnergw.limits.admission import admission_for
from runnergw.limits.checks import SlotCheck
from runnergw.limits.interfaces import ILimitState
from runnergw.ollama.endpoints import endpoint_for

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["ConcurrencyFilter"]

_CHECK = "concurrency.check"

_COUNTED_GROUPS = frozenset({"inference", "management"})
"""What holds a model or the disk: generations, embeddings, pulls. Listing models and
asking for the version are never held back by a running stream."""


@implementer(IFilter)
class ConcurrencyFilter:
    """Holds a place per inference or management request of a subject until the exchange is
    over (a stream counts until its last byte), at most the role's ``concurrency``.

    When all places are taken the request waits up to ``concurrencyWait`` for one (in
    arrival order on one node with in-process limits), then gets 429 ``{"error": …}`` with
    ``Retry-After: 1``.
    """

    name = "concurrency"
    after_any = ("role",)

    def __init__(self, state: ILimitState) -> None:
        self.state = state

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> ConcurrencyFilter:
        """Uses the gateway's limit state."""
        if context.limits is None:
            raise ValueError("the concurrency filter needs a roles section")
        return cls(context.limits.state)

    def request_headers(self, exchange: Exchange) -> Any:
        """Give the request's admission the check for a place (taken, waited for, or
        refused with 429 when the admission makes its checks)."""
        rules = role_rules(exchange)
        if rules is None or rules.concurrency is None:
            return None
        endpoint = endpoint_for(exchange.api_path)
        if endpoint is None or endpoint.group not in _COUNTED_GROUPS:
            return None
        check = exchange.metadata[_CHECK] = SlotCheck(subject_key(exchange), rules.concurrency,
                                                     rules.concurrency_wait)
        # A wait is cancelled by the chain when the client leaves meanwhile.
        return admission_for(exchange, self.state).add(
            check, lambda answered: self._placed(rules.name, rules.concurrency, answered))

    def _placed(self, role: str, limit: int, check: SlotCheck) -> None:
        if check.slot is None:
            under_way = "1 request of this caller is" if limit == 1 else \
                f"{limit} requests of this caller are"
            raise Reject(429, f'{under_way} already under way (the limit of role "{role}")',
                         headers=(("Retry-After", "1"),), reason="concurrency limit")

    def done(self, exchange: Exchange) -> None:
        """Give the place back."""
        check = exchange.metadata.pop(_CHECK, None)
        if check is not None and check.slot is not None:
            check.slot.release()
