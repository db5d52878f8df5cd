"""The ``Date`` header: the clock's second as HTTP writes it, formatted once per second."""

from __future__ import annotations

from unittest import mock

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.http import dates
from runnergw.http.dates import DateHeader

__all__ = ["DateHeaderTests"]


class DateHeaderTests(SynchronousTestCase):
    """What every response's ``Date`` says."""

    def test_imf_fixdate_of_the_clock(self) -> None:
        """The clock's time in GMT, as RFC 9110 writes it."""
        clock = Clock()
        clock.advance(1796457600.75)
        self.assertEqual(DateHeader(clock).now(), "Sat, 05 Dec 2026 08:00:00 GMT")

    def test_formatted_once_per_second(self) -> None:
        """Many responses in one second share one formatting; the next second is new."""
        clock = Clock()
        header = DateHeader(clock)
        with mock.patch.object(dates, "formatdate", wraps=dates.formatdate) as formatting:
            texts = {header.now() for _ in range(100)}
            clock.advance(1.0)
            texts.add(header.now())
        self.assertEqual((formatting.call_count, len(texts)), (2, 2))
