"""Quota days: the date in the configured time zone, and how long until its midnight."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from twisted.internet.interfaces import IReactorTime

__all__ = ["QuotaDays"]


class QuotaDays:
    """Which day a moment belongs to, where daily quotas reset at local midnight.

    The day is worked out once per day: between two midnights a call costs a comparison.
    """

    def __init__(self, zone: ZoneInfo, clock: IReactorTime) -> None:
        self.zone = zone
        self.clock = clock
        self._day = ""
        self._starts = 0.0
        self._ends = float("-inf")

    def _settle(self, now: float) -> None:
        local = datetime.fromtimestamp(now, self.zone)
        midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
        # Midnight in wall-clock terms: a day across a daylight-saving change is 23 or 25 h.
        following = (midnight + timedelta(days=1)).replace(tzinfo=None)
        self._day = local.date().isoformat()
        self._starts = midnight.timestamp()
        self._ends = following.replace(tzinfo=self.zone).timestamp()

    def today(self) -> str:
        """The current day, as an ISO date (``2026-12-05``)."""
        now = self.clock.seconds()
        if not self._starts <= now < self._ends:
            self._settle(now)
        return self._day

    def seconds_to_reset(self) -> float:
        """Seconds until the current day ends (when daily quotas start again)."""
        now = self.clock.seconds()
        if not self._starts <= now < self._ends:
            self._settle(now)
        return self._ends - now
