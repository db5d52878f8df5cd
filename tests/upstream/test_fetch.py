"""The gateway's own small ``GET`` to a host (probes, loaded models): bounded in time and
size, over the host's pooled connections."""

from __future__ import annotations

from twisted.internet.defer import TimeoutError
from twisted.internet.error import ConnectionLost
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.upstream.fetch import fetch
from runnergw.upstream.response import UpstreamProtocolError
from tests.helpers.fake_hosts import ScriptedPool, answer, reset

__all__ = ["FetchTests"]


class FetchTests(SynchronousTestCase):
    """``fetch(pool, clock, netloc, path, timeout=…, limit=…)``."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.pool = ScriptedPool()

    def get(self, limit: int = 100) -> object:
        return fetch(self.pool, self.clock, "10.0.0.1:11434", "/api/version", timeout=2.0,
                     limit=limit)

    def test_whole_answer(self) -> None:
        """A plain ``GET`` naming the host; the status and body come back and the
        connection goes back to the pool."""
        getting = self.get()
        connection, transport = self.pool.open()
        self.assertEqual(transport.value(), b"GET /api/version HTTP/1.1\r\n"
                                            b"Host: 10.0.0.1:11434\r\nUser-Agent: runnergw\r\n"
                                            b"Accept: application/json\r\n\r\n")
        answer(connection, 200, b'{"version":"0.12.0"}')
        self.assertEqual(self.successResultOf(getting), (200, b'{"version":"0.12.0"}'))
        self.assertEqual(self.pool.released, [connection])

    def test_error_status_is_an_answer(self) -> None:
        """A 500 is answered as such (the caller decides)."""
        getting = self.get()
        answer(self.pool.open()[0], 500, b"{}")
        self.assertEqual(self.successResultOf(getting), (500, b"{}"))

    def test_silent_host_times_out(self) -> None:
        """No answer within the timeout: the fetch fails and its connection is dropped."""
        getting = self.get()
        connection, transport = self.pool.open()
        self.clock.advance(2.0)
        self.failureResultOf(getting, TimeoutError)
        self.assertTrue(transport.disconnecting)
        self.assertEqual(self.pool.released, [connection])

    def test_connect_counts_in_the_timeout(self) -> None:
        """A connect that hangs is given up at the same timeout."""
        getting = self.get()
        self.clock.advance(2.0)
        self.failureResultOf(getting, TimeoutError)

    def test_answer_too_large(self) -> None:
        """A body over the limit is refused and the connection dropped."""
        getting = self.get(limit=4)
        connection, transport = self.pool.open()
        answer(connection, 200, b'{"version":"0.12.0"}')
        self.failureResultOf(getting, UpstreamProtocolError)
        self.assertTrue(transport.disconnecting)

    def test_reset(self) -> None:
        """A connection reset before the answer fails the fetch."""
        getting = self.get()
        reset(self.pool.open()[0])
        self.failureResultOf(getting, ConnectionLost)

    def test_closed_kept_connection_tried_again(self) -> None:
        """A kept-alive connection the host had closed while idle is no failure: the
        request goes on a new connection, and its answer is the fetch's."""
        kept, _ = self.pool.connection()
        self.pool.keep(kept)
        getting = self.get()
        reset(kept)
        self.assertNoResult(getting)
        answer(self.pool.open()[0], 200, b"{}")
        self.assertEqual(self.successResultOf(getting), (200, b"{}"))
