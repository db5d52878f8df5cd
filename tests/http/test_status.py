"""Status lines: the one place they are written, for interim and final responses alike."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.http.status import reason_phrase, status_line

__all__ = ["StatusLineTests"]


class StatusLineTests(SynchronousTestCase):
    """What a client reads first."""

    def test_known_statuses(self) -> None:
        """Registered statuses carry their standard reason phrase."""
        self.assertEqual(status_line(200), b"HTTP/1.1 200 OK\r\n")
        self.assertEqual(status_line(100), b"HTTP/1.1 100 Continue\r\n")
        self.assertEqual(status_line(413), b"HTTP/1.1 413 Request Entity Too Large\r\n")
        self.assertEqual(status_line(502), b"HTTP/1.1 502 Bad Gateway\r\n")

    def test_unknown_statuses(self) -> None:
        """A status a runner invents is relayed with the phrase ``Unknown``."""
        self.assertEqual(status_line(599), b"HTTP/1.1 599 Unknown\r\n")
        self.assertEqual(status_line(999), b"HTTP/1.1 999 Unknown\r\n")
        self.assertEqual(reason_phrase(299), "Unknown")

    def test_non_statuses_refused(self) -> None:
        """Numbers that are no three-digit status are refused, never written."""
        for number in (0, 99, 1000, -200, 10_000):
            with self.subTest(number=number):
                error = self.assertRaises(ValueError, status_line, number)
                self.assertIn(str(number), str(error))

    def test_reason_phrases(self) -> None:
        """The phrase alone, as the audit or a log line may name a status."""
        self.assertEqual(reason_phrase(404), "Not Found")
        self.assertEqual(reason_phrase(431), "Request Header Fields Too Large")
