"""The state limits share: what several gateway nodes would have to agree on.

Rate-limit buckets, concurrency slots and daily token totals live behind ``ILimitState``, so
that the filters enforcing them do not know whether the state is in this process or shared
by a cluster. Every method returns its result, or a Deferred firing with it when the state
is elsewhere; ``when_known`` runs the next step either way without a Deferred in the
in-process case (the hot path).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import attrs
from twisted.internet.defer import Deferred
from zope.interface import Interface

__all__ = ["ILimitState", "ISlot", "RateDecision", "TokenLease", "when_known"]

T = TypeVar("T")
R = TypeVar("R")


@attrs.frozen
class RateDecision:
    """The answer of a rate-limit bucket to one request."""

    allowed: bool
    limit: int
    """The bucket size (requests that may come at once)."""
    remaining: int
    """Requests still allowed at once after this one."""
    reset_after: float
    """Seconds until the bucket is full again."""
    retry_after: float
    """Seconds until one more request is allowed (0 when allowed)."""


@attrs.define(eq=False)
class TokenLease:
    """The tokens one request holds of its subject's daily quota, in the order they were
    granted, each run with the store that granted it: a state that counts in more than one
    place (Redis, and this node while Redis is away) takes back each part where it was
    taken."""

    runs: list[tuple[object, int]] = attrs.Factory(list)
    """(store, tokens) in the order granted; consecutive grants of one store are one run."""

    @property
    def tokens(self) -> int:
        """Every token leased so far."""
        return sum(tokens for _, tokens in self.runs)

    def hold(self, store: object, tokens: int) -> None:
        """Note ``tokens`` granted by ``store``."""
        if tokens <= 0:
            return
        if self.runs and self.runs[-1][0] is store:
            tokens += self.runs.pop()[1]
        self.runs.append((store, tokens))

    def settlement(self, used: int) -> tuple[dict[object, int], int]:
        """What ``used`` tokens leave each store to give back (zero or less: the tokens
        used are taken from the runs in the order they were granted), and the tokens used
        beyond the whole lease. Stores are told apart by identity."""
        given_back: dict[object, int] = {}
        left = max(0, used)
        for store, tokens in self.runs:
            taken = min(tokens, left)
            left -= taken
            given_back[store] = given_back.get(store, 0) + taken - tokens
        return given_back, left


class ISlot(Interface):
    """One request's place under a concurrency limit."""

    def release() -> None:  # type: ignore[misc]
        """Give the place back (idempotent); a waiting request may take it."""


class ILimitState(Interface):
    """Buckets, slots and token totals, by key (a subject: the same subject holding tokens of
    two roles is one subject, limited by the role of each request)."""

    def take_request(key: str, per_minute: int, burst: int) -> Any:  # type: ignore[misc]
        """Count one request against the key's bucket of ``burst`` requests refilled at
        ``per_minute``; a ``RateDecision`` (or a Deferred of one)."""

    def acquire_slot(key: str, limit: int, wait: float) -> Any:  # type: ignore[misc]
        """One of ``limit`` places for the key: an ``ISlot``, or None when all are taken and
        none came free within ``wait`` seconds (or a Deferred of either; cancelling it gives
        up the wait)."""

    def tokens_used(key: str, day: str) -> Any:  # type: ignore[misc]
        """Tokens counted for the key on ``day`` (ISO date), leases included."""

    def lease_tokens(key: str, day: str, limit: int, want: int,  # type: ignore[misc]
                     need: int = 1, lease: TokenLease | None = None) -> Any:
        """Take up to ``want`` tokens of what ``limit`` leaves the key on ``day``, counting
        them as used at once, when at least ``need`` are left (else none): ``(granted,
        left)``, ``left`` being what remains after the lease. One atomic step: the whole
        admission of a request (its prompt, its cap) is one call. The tokens granted are
        added to ``lease`` (the request's), with the store that granted them."""

    def settle_lease(key: str, day: str, lease: TokenLease,  # type: ignore[misc]
                     used: int) -> Any:
        """The request holding ``lease`` ended having used ``used`` tokens: each store
        that granted part of the lease gives back what was not used of its part; tokens
        used beyond the lease are counted where this state counts usage now."""

    def admit(checks: Any) -> Any:  # type: ignore[misc]
        """Make a request's checks (``limits.checks``: its bucket, its slot, its first
        lease) in order, as the calls above would, up to the first refused; each check is
        filled with its answer as soon as it is known. None when done at once, else a
        Deferred (cancelling it gives up a wait for a slot). A state in another process
        makes them in one round trip where it can."""

    def add_tokens(key: str, day: str, count: int) -> Any:  # type: ignore[misc]
        """Count ``count`` more tokens for the key on ``day`` (never below zero), with no
        limit: usage that happened is counted. A request's lease is settled by
        ``settle_lease``, which knows where each part of it was taken."""


def when_known(result: T | Deferred[T], step: Callable[[T], R]) -> R | Deferred[R]:
    """``step(result)`` now when ``result`` is a value, else once the Deferred fires."""
    if isinstance(result, Deferred):
        return result.addCallback(step)
    return step(result)
