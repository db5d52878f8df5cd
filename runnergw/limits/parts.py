"""What the role filters share: the limit state, quota days and the usage ledger."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed

from runnergw.config.settings import Settings
from runnergw.limits.days import QuotaDays
from runnergw.limits.interfaces import ILimitState
from runnergw.limits.local import LocalLimitState
from runnergw.limits.redis_parts import redis_limit_state
from runnergw.usage.ledger import UsageEntry, UsageLedger

__all__ = ["LimitParts"]


class LimitParts:
    """The limit state, the quota day and the ledger, started and stopped with the gateway.

    Until ``start`` has read today's usage from the ledger, ``ready`` gives a Deferred that
    requests counting tokens wait for: a restart never forgets what was used today.
    """

    def __init__(self, state: ILimitState, days: QuotaDays, ledger: UsageLedger | None) -> None:
        self.state = state
        self.days = days
        self.ledger = ledger
        self._known = ledger is None
        """True once today's usage was read from the ledger."""
        self._waiting: list[Deferred[None]] = []
        self._starting: Deferred[None] | None = None

    @classmethod
    def from_settings(cls, settings: Settings, reactor: Any) -> LimitParts:
        """The state ``limits.backend`` names (in this process, or in Redis: then the
        day's totals are the cluster's, never seeded from this node's ledger) and the
        SQLite ledger of ``policy.ledgerPath`` (not yet open)."""
        policy = settings.policy
        state: ILimitState = LocalLimitState(reactor)
        if settings.limits.shared:
            state = redis_limit_state(settings.limits, settings.redis, reactor)
        return cls(state, QuotaDays(policy.zone, reactor),
                   UsageLedger(policy.ledger_path, reactor))

    def ready(self) -> Deferred[None] | None:
        """None once today's usage is known, else a Deferred that fires when it is."""
        if self._known:
            return None
        waiter: Deferred[None] = Deferred()
        self._waiting.append(waiter)
        return waiter

    def start(self) -> Deferred[None]:
        """Open the ledger and count today's usage from it; fails when the ledger cannot be
        opened (the gateway must not run with quotas it cannot keep)."""
        if self.ledger is None:
            return succeed(None)
        day = self.days.today()
        self._starting = opened = self.ledger.open()
        opened.addCallback(lambda _: self.ledger.totals_for_day(day))  # type: ignore[union-attr]
        opened.addCallback(self._seeded, day)
        return opened

    def _seeded(self, totals: dict[str, int], day: str) -> None:
        seed = getattr(self.state, "seed", None)
        if seed is not None:
            seed(day, totals)
        self._known = True
        waiting, self._waiting = self._waiting, []
        for waiter in waiting:
            waiter.callback(None)

    def record_request(self, day: str, subject: str, role: str, model: str,
                       prompt_tokens: int, completion_tokens: int, truncated: int = 0) -> None:
        """Add one request's counts to the ledger (written in the background), without a
        ``UsageEntry`` made for them when the ledger takes them so."""
        ledger = self.ledger
        if ledger is None:
            return
        by_request = getattr(ledger, "record_request", None)
        if by_request is None:
            ledger.record(UsageEntry(day, subject, role, model, prompt_tokens,
                                     completion_tokens, truncated=truncated))
        else:
            by_request(day, subject, role, model, prompt_tokens, completion_tokens, truncated)

    def stop(self) -> Deferred[None]:
        """Write what the ledger still holds and close it; a start still under way is
        waited for first (its failure is the start's to report)."""
        stop_state = getattr(self.state, "stop", None)
        if stop_state is not None:
            stop_state()
        ledger = self.ledger
        if ledger is None:
            return succeed(None)
        starting, self._starting = self._starting, None
        if starting is None or starting.called:
            return ledger.close()
        finished: Deferred[None] = Deferred()
        starting.addBoth(lambda result: (finished.callback(None), result)[1])
        return finished.addCallback(lambda _: ledger.close())
