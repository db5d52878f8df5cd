"""The ``rateLimit`` filter: requests per minute per subject, with a burst, by role."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from runnergw.chain.exchange import Exchange, Reject
from runnergw.chain.interfaces import IFilter
from runnergw.filters.role import role_rules, subject_key
from runnergw.limits.admission import admission_for
from runnergw.limits.checks import BucketCheck
from runnergw.limits.interfaces import ILimitState, RateDecision

if TYPE_CHECKING:
    from runnergw.filters.registry import FilterContext

__all__ = ["RateLimitFilter", "rate_limit_headers"]

_CHECK = "rateLimit.check"


def rate_limit_headers(decision: RateDecision) -> tuple[tuple[str, str], ...]:
    """``RateLimit-Limit``, ``-Remaining`` and ``-Reset`` (whole seconds until the bucket is
    full), as the IETF draft names them and common clients read them."""
    return (
        ("RateLimit-Limit", str(decision.limit)),
        ("RateLimit-Remaining", str(decision.remaining)),
        ("RateLimit-Reset", str(math.ceil(decision.reset_after))),
    )


@implementer(IFilter)
class RateLimitFilter:
    """Counts each request of a subject against its role's ``requestsPerMinute``, a bucket of
    ``burst`` requests refilled at that rate. Over it: 429 ``{"error": …}`` with
    ``Retry-After`` (whole seconds until one more request is allowed) and the ``RateLimit-*``
    headers; answers that pass carry the ``RateLimit-*`` headers too.

    Roles without ``requestsPerMinute`` are not limited; without a ``roles`` section nothing is.
    """

    name = "rateLimit"
    after_any = ("role",)

    def __init__(self, state: ILimitState) -> None:
        self.state = state

    @classmethod
    def from_settings(cls, options: None, context: FilterContext) -> RateLimitFilter:
        """Uses the gateway's limit state."""
        if context.limits is None:
            raise ValueError("the rateLimit filter needs a roles section")
        return cls(context.limits.state)

    def request_headers(self, exchange: Exchange) -> Any:
        """Give the request's admission the check of the subject's bucket (one request
        taken, or 429 when the admission makes its checks)."""
        rules = role_rules(exchange)
        if rules is None or rules.requests_per_minute is None:
            return None
        check = exchange.metadata[_CHECK] = BucketCheck(
            subject_key(exchange), rules.requests_per_minute, rules.burst_size)
        return admission_for(exchange, self.state).add(
            check, lambda answered: self._decided(rules.name, answered))

    def _decided(self, role: str, check: BucketCheck) -> None:
        decision = check.decision
        assert decision is not None
        if not decision.allowed:
            wait = max(1, math.ceil(decision.retry_after))
            raise Reject(429, f'rate limit of role "{role}" reached: retry in {wait} s',
                         headers=(("Retry-After", str(wait)), *rate_limit_headers(decision)),
                         reason="rate limited")

    def response_headers(self, exchange: Exchange) -> None:
        """Tell the client where it stands."""
        check = exchange.metadata.get(_CHECK)
        decision = None if check is None else check.decision
        if decision is not None and decision.allowed:
            for name, value in rate_limit_headers(decision):
                exchange.response_headers.set(name, value)
