"""``when_known``: the next step now for a value, later for a Deferred."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from runnergw.limits.interfaces import when_known

__all__ = ["WhenKnownTests"]


class WhenKnownTests(SynchronousTestCase):
    """In-process answers take no Deferred; remote ones chain."""

    def test_value(self) -> None:
        """A value goes straight through the step."""
        self.assertEqual(when_known(2, lambda n: n * 3), 6)

    def test_deferred(self) -> None:
        """A Deferred gets the step as a callback."""
        pending: Deferred[int] = Deferred()
        result = when_known(pending, lambda n: n * 3)
        assert isinstance(result, Deferred)
        self.assertNoResult(result)
        pending.callback(2)
        self.assertEqual(self.successResultOf(result), 6)
