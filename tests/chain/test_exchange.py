"""What filters ask of an exchange: its body collected, its answer observed, and within what."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.testing import make_exchange

__all__ = ["CollectBodyTests", "HasBodyTests", "ObserveResponseTests"]


class HasBodyTests(SynchronousTestCase):
    """Whether the client sends a body."""

    def test_declared_lengths(self) -> None:
        """A length of 0 means no body; any other length, or a chunked body, means one."""
        self.assertFalse(make_exchange("GET").has_body)
        self.assertTrue(make_exchange("POST", body=b"x").has_body)
        self.assertTrue(make_exchange("POST", body=b"", chunked=True).has_body)


class CollectBodyTests(SynchronousTestCase):
    """``collect_body``: the smallest limit asked for holds."""

    def test_smallest_limit_holds(self) -> None:
        """Whatever the order the filters ask in, the smallest limit is kept."""
        for limits in ((100, 10), (10, 100)):
            with self.subTest(limits=limits):
                exchange = make_exchange("POST")
                for limit in limits:
                    exchange.collect_body(limit)
                self.assertEqual(exchange.body_limit, 10)

    def test_nobody_asked(self) -> None:
        """Without a request, no body is collected."""
        self.assertIsNone(make_exchange("POST").body_limit)

    def test_negative_refused(self) -> None:
        """A negative limit is a filter's bug, refused at once."""
        self.assertRaises(ValueError, make_exchange().collect_body, -1)


class ObserveResponseTests(SynchronousTestCase):
    """``observe_response``: who watches the answer, and the largest body they see."""

    def test_default_limit(self) -> None:
        """An observer that gives no size sees bodies of up to 1 MiB."""
        exchange = make_exchange()
        exchange.observe_response(object())
        self.assertEqual(exchange.response_body_limit, 1 << 20)

    def test_own_limit(self) -> None:
        """An observer's own size replaces the default, larger or smaller."""
        for size in (10, 4 << 20):
            with self.subTest(size=size):
                exchange = make_exchange()
                exchange.observe_response(object(), size)
                self.assertEqual(exchange.response_body_limit, size)

    def test_smallest_given_limit_holds_in_any_order(self) -> None:
        """With several observers the smallest size given holds, whichever asked first; one
        that gives none does not impose the default on the others."""
        for sizes in ((None, 4 << 20), (4 << 20, None), (4 << 20, 2 << 20, None),
                      (None, 2 << 20, 4 << 20)):
            with self.subTest(sizes=sizes):
                exchange = make_exchange()
                for size in sizes:
                    exchange.observe_response(object(), size)
                expected = min(size for size in sizes if size is not None)
                self.assertEqual(exchange.response_body_limit, expected)

    def test_observer_once(self) -> None:
        """An observer asking twice is shown the answer once."""
        exchange = make_exchange()
        observer = object()
        exchange.observe_response(observer)
        exchange.observe_response(observer, 10)
        self.assertEqual(exchange.response_observers, [observer])
        self.assertEqual(exchange.response_body_limit, 10)
