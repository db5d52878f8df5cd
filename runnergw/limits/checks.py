"""The limit checks of one request, made together: its bucket, its slot, its first lease.

A state in another process (Redis) answers every call after a round trip. The limit filters
of a request hand their checks to one ``Admission`` instead of asking one after the other,
and the state makes them all in one step (``ILimitState.admit``): the first refused ends it,
as it would have ended the filters' questions in turn. Each check is filled with its answer
as soon as it is known, so that what it took (a slot, leased tokens) is given back at the
end of the request even when the request stopped waiting for the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred

from runnergw.limits.interfaces import ISlot, RateDecision, TokenLease, when_known

__all__ = ["BucketCheck", "Check", "LeaseCheck", "SlotCheck", "admit_in_turn"]


@attrs.define(eq=False)
class BucketCheck:
    """One request counted against a subject's bucket (``ILimitState.take_request``)."""

    key: str
    per_minute: int
    burst: int
    decision: RateDecision | None = None

    @property
    def answered(self) -> bool:
        return self.decision is not None

    @property
    def refused(self) -> bool:
        return self.decision is not None and not self.decision.allowed

    def ask(self, state: Any) -> Any:
        return when_known(state.take_request(self.key, self.per_minute, self.burst),
                          self.answer)

    def answer(self, decision: RateDecision) -> None:
        self.decision = decision


@attrs.define(eq=False)
class SlotCheck:
    """One of a subject's ``limit`` places, waited for up to ``wait`` seconds
    (``ILimitState.acquire_slot``)."""

    key: str
    limit: int
    wait: float
    slot: ISlot | None = None
    answered: bool = False

    @property
    def refused(self) -> bool:
        return self.answered and self.slot is None

    def ask(self, state: Any) -> Any:
        return when_known(state.acquire_slot(self.key, self.limit, self.wait), self.answer)

    def answer(self, slot: ISlot | None) -> None:
        self.slot, self.answered = slot, True


@attrs.define(eq=False)
class LeaseCheck:
    """Tokens taken from a subject's daily quota (``ILimitState.lease_tokens``); what is
    granted is added to ``lease``."""

    key: str
    day: str
    limit: int
    want: int
    need: int
    lease: TokenLease
    granted: int | None = None
    left: int = 0

    @property
    def answered(self) -> bool:
        return self.granted is not None

    @property
    def refused(self) -> bool:
        return self.granted is not None and self.granted < min(self.want, self.need)

    def ask(self, state: Any) -> Any:
        leased = state.lease_tokens(self.key, self.day, self.limit, self.want, self.need,
                                    self.lease)
        return when_known(leased, lambda result: self.answer(*result))

    def answer(self, granted: int, left: int) -> None:
        self.granted, self.left = granted, left


Check = BucketCheck | SlotCheck | LeaseCheck


def admit_in_turn(state: Any, checks: Sequence[Check]) -> Deferred[None] | None:
    """Make ``checks`` one after the other through ``state``'s own calls, up to the first
    refused: ``ILimitState.admit`` for a state that answers each call at once."""
    for index, check in enumerate(checks):
        asked = check.ask(state)
        if isinstance(asked, Deferred):
            return asked.addCallback(_admit_rest, check, state, checks[index + 1:])
        if check.refused:
            return None
    return None


def _admit_rest(_: object, answered: Check, state: Any,
                rest: Sequence[Check]) -> Deferred[None] | None:
    return None if answered.refused else admit_in_turn(state, rest)
