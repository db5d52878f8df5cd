"""The server's open connections, and closing them when the gateway stops accepting."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.http.connections import OpenConnections
from tests.http.support import ServerTestCase, parse_responses

__all__ = ["CloseWhenIdleTests", "OpenConnectionsTests"]

_GET = b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n"


class OpenConnectionsTests(SynchronousTestCase):
    """Waiting for the last connection to close."""

    def test_fires_when_the_last_closes(self) -> None:
        """The wait ends with the last connection, not before."""
        connections = OpenConnections()
        connections.add("a")
        connections.add("b")
        empty = connections.when_empty()
        connections.discard("a")
        self.assertNoResult(empty)
        connections.discard("b")
        self.successResultOf(empty)

    def test_at_once_when_none_is_open(self) -> None:
        """Nothing open: nothing to wait for."""
        self.successResultOf(OpenConnections().when_empty())

    def test_cancelled_wait_is_forgotten(self) -> None:
        """A cancelled wait is not fired later."""
        connections = OpenConnections()
        connections.add("a")
        empty = connections.when_empty()
        empty.cancel()
        self.failureResultOf(empty)
        connections.discard("a")


    def test_each_open_connection_even_if_one_closes(self) -> None:
        """An action that closes its connection (drops it from the set) still reaches
        every other one."""
        connections = OpenConnections()
        connections.update({"a", "b", "c"})
        seen: list[str] = []

        def close(connection: str) -> None:
            seen.append(connection)
            connections.discard(connection)

        connections.each(close)
        self.assertEqual((sorted(seen), len(connections)), (["a", "b", "c"], 0))


class CloseWhenIdleTests(ServerTestCase):
    """What a client connection sees once the gateway stops accepting."""

    def test_idle_keep_alive_connection_is_closed(self) -> None:
        """A connection waiting for its next request is closed at once."""
        protocol, transport = self.connect()
        protocol.factory.close_when_idle()
        self.assertTrue(transport.disconnecting)

    def test_exchange_under_way_finishes_with_connection_close(self) -> None:
        """A connection busy with an exchange stays open until its answer is out, which says
        ``Connection: close``; then it closes."""
        protocol, transport = self.request(_GET)
        protocol.factory.close_when_idle()
        self.assertFalse(transport.disconnecting)
        [call] = self.gateway.calls
        call.respond(200, b"done")
        [response] = parse_responses(transport.value())
        self.assertEqual((response.status, response.headers.get("connection")), (200, "close"))
        self.assertTrue(transport.disconnecting)

    def test_answer_already_under_way_closes_after(self) -> None:
        """An answer whose head went out before keeps its head; the connection closes after
        its end rather than waiting for another request."""
        protocol, transport = self.request(_GET)
        [call] = self.gateway.calls
        call.send_head(200, call.exchange.response_headers, None)
        protocol.factory.close_when_idle()
        call.client.write(b"tail")
        call.client.finish()
        call.end()
        self.assertTrue(transport.disconnecting)

    def test_partial_next_request_is_left_to_its_deadline(self) -> None:
        """A connection that started sending a request is not cut in the middle of it."""
        protocol, transport = self.request(b"GET / HTTP/1.1\r\n")
        protocol.factory.close_when_idle()
        self.assertFalse(transport.disconnecting)
