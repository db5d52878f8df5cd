"""``when_known``: the next step now for a value, later for a Deferred."""

from __future__ import annotations

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from runnergw.limits.interfaces import TokenLease, when_known

__all__ = ["TokenLeaseTests", "WhenKnownTests"]


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


class TokenLeaseTests(SynchronousTestCase):
    """A request's lease says what each store gave, so each takes back its own part."""

    def setUp(self) -> None:
        self.shared, self.node = object(), object()

    def test_runs_merged(self) -> None:
        """Grants of one store in a row are one run; nothing granted is not noted."""
        lease = TokenLease()
        for store, tokens in ((self.shared, 10), (self.shared, 16), (self.node, 0),
                              (self.node, 16), (self.shared, 16)):
            lease.hold(store, tokens)
        self.assertEqual(lease.runs, [(self.shared, 26), (self.node, 16), (self.shared, 16)])
        self.assertEqual(lease.tokens, 58)

    def test_used_taken_in_order(self) -> None:
        """The tokens used are taken from the runs in the order they were granted: a store
        whose later run was not reached gives that run back."""
        lease = TokenLease([(self.shared, 26), (self.node, 16), (self.shared, 16)])
        self.assertEqual(lease.settlement(30), ({self.shared: -16, self.node: -12}, 0))

    def test_used_beyond(self) -> None:
        """Tokens used beyond the whole lease are told apart, nothing given back."""
        lease = TokenLease([(self.shared, 10), (self.node, 5)])
        self.assertEqual(lease.settlement(21), ({self.shared: 0, self.node: 0}, 6))

    def test_nothing_used(self) -> None:
        """A request that used nothing gives everything back."""
        lease = TokenLease([(self.shared, 10)])
        self.assertEqual(lease.settlement(0), ({self.shared: -10}, 0))
