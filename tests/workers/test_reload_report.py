"""A worker's notify message that ends a reload says whether the reload was taken."""

from __future__ import annotations

from typing import Any

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.workers.reload_report import ReportingNotifier

__all__ = ["ReportingNotifierTests"]


class _Recording(ReportingNotifier):
    def __init__(self) -> None:
        super().__init__("/run/notify", Clock())
        self.sent: list[list[str]] = []

    def send(self, *fields: Any) -> bool:
        self.sent.append(list(fields))
        return True


class ReportingNotifierTests(SynchronousTestCase):
    """``RELOAD=ok`` or ``RELOAD=refused`` on the ``READY=1`` after ``RELOADING=1``."""

    def setUp(self) -> None:
        self.results = {"ok": 0, "failed": 0}
        self.notifier = _Recording()
        self.notifier.reload_results = self.results

    def test_start_ready_plain(self) -> None:
        """The first READY=1 (the worker serves) carries no reload outcome."""
        self.notifier.ready("serving")
        self.assertEqual(self.notifier.sent, [["READY=1", "STATUS=serving"]])

    def test_reload_taken(self) -> None:
        """A reload counted ``ok`` ends with ``RELOAD=ok``."""
        self.notifier.reloading()
        self.results["ok"] += 1
        self.notifier.ready("serving")
        self.assertEqual(self.notifier.sent[-1], ["READY=1", "STATUS=serving", "RELOAD=ok"])

    def test_reload_refused(self) -> None:
        """A refused reload (counted failed) ends with ``RELOAD=refused``; the next plain
        READY=1 carries nothing."""
        self.notifier.reloading()
        self.results["failed"] += 1
        self.notifier.ready("serving")
        self.assertEqual(self.notifier.sent[-1],
                         ["READY=1", "STATUS=serving", "RELOAD=refused"])
        self.notifier.ready("serving")
        self.assertEqual(self.notifier.sent[-1], ["READY=1", "STATUS=serving"])
