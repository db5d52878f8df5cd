"""One request's limit checks, given by the limit filters and made together."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from runnergw.chain.admission import IAdmission
from runnergw.chain.exchange import Exchange
from runnergw.limits.checks import Check
from runnergw.limits.interfaces import ILimitState, when_known

__all__ = ["HELD_BODY_MOST", "Admission", "admission_for"]

HELD_BODY_MOST = 64 << 10
"""Largest body (its ``Content-Length``) read before the checks that wait for a lease are
made: a subject over its rate or concurrency limit never has more read before its 429, and
larger bodies cost a round trip more (the checks before the body, the lease after)."""

Judge = Callable[[Any], None]
"""A filter's reading of its check once answered: raises its ``Reject`` when refused."""


@implementer(IAdmission)
class Admission:
    """The checks the limit filters of one request give (``add``), made in one step of the
    state (``ILimitState.admit``), then each judged by its filter in the order given.

    A state whose ``gathers_checks`` is true (each call a round trip) has them wait until the
    chain settles them (``IAdmission``); any other makes each at once, when given.
    """

    def __init__(self, state: ILimitState) -> None:
        self.state = state
        self.gathers = bool(getattr(state, "gathers_checks", False))
        self.held = False
        self._waiting: list[tuple[Check, Judge]] = []

    def add(self, check: Check, judge: Judge) -> Any:
        """Give a check, with what its filter makes of its answer: made now (None, or a
        Deferred) unless this admission gathers checks."""
        self._waiting.append((check, judge))
        return None if self.gathers else self.settle()

    def hold(self, body_size: int | None) -> None:
        """Keep the checks waiting over the body read (a ``request_body`` hook adds the last
        one and settles them) when the body announces at most ``HELD_BODY_MOST`` bytes; a
        larger or chunked body is read only once the checks given so far admitted the
        request."""
        self.held = self.gathers and body_size is not None and body_size <= HELD_BODY_MOST

    def settle(self) -> Any:
        self.held = False
        waiting, self._waiting = self._waiting, []
        if not waiting:
            return None
        made = self.state.admit([check for check, _ in waiting])
        return when_known(made, lambda _: _judge_answered(waiting))


def _judge_answered(waiting: list[tuple[Check, Judge]]) -> None:
    for check, judge in waiting:
        if not check.answered:
            return  # after a refused check: never made
        judge(check)


def admission_for(exchange: Exchange, state: ILimitState) -> Admission:
    """The exchange's admission (made by the first limit filter that asks)."""
    admission = exchange.admission
    if admission is None:
        admission = exchange.admission = Admission(state)
    return admission
