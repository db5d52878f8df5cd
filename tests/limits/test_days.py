"""Quota days: local dates and the time left until their midnight."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.limits.days import QuotaDays

__all__ = ["QuotaDaysTests"]


def _days(zone: str, *moment: int) -> tuple[QuotaDays, Clock]:
    clock = Clock()
    clock.advance(datetime(*moment, tzinfo=ZoneInfo(zone)).timestamp())  # type: ignore[misc]
    return QuotaDays(ZoneInfo(zone), clock), clock


class QuotaDaysTests(SynchronousTestCase):
    """Days follow the configured zone, midnight included."""

    def test_day_in_zone(self) -> None:
        """23:30 in Tokyo is the next day in UTC terms only for Tokyo's own date."""
        days, _ = _days("Asia/Tokyo", 2026, 12, 5, 23, 30)
        self.assertEqual(days.today(), "2026-12-05")
        self.assertEqual(days.seconds_to_reset(), 1800.0)

    def test_midnight_turns_the_day(self) -> None:
        """At midnight the day changes and a full day is left."""
        days, clock = _days("UTC", 2026, 12, 5, 23, 59, 59)
        self.assertEqual((days.today(), days.seconds_to_reset()), ("2026-12-05", 1.0))
        clock.advance(1)
        self.assertEqual((days.today(), days.seconds_to_reset()), ("2026-12-06", 86400.0))

    def test_short_day(self) -> None:
        """The day clocks spring forward lasts 23 hours."""
        days, clock = _days("Europe/Paris", 2026, 3, 28, 23, 0)
        clock.advance(3600)
        self.assertEqual((days.today(), days.seconds_to_reset()), ("2026-03-29", 23 * 3600.0))

    def test_long_day(self) -> None:
        """The day clocks fall back lasts 25 hours."""
        days, clock = _days("Europe/Paris", 2026, 10, 25, 0, 0)
        self.assertEqual((days.today(), days.seconds_to_reset()), ("2026-10-25", 25 * 3600.0))
