"""The factory of the gateway's connections: closing them when the gateway stops."""

from __future__ import annotations

from tests.http.support import ServerTestCase, parse_responses

__all__ = ["CloseConnectionsTests", "CloseWhenIdleTests"]

_GET = b"GET / HTTP/1.1\r\nHost: gw\r\n\r\n"


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


class CloseConnectionsTests(ServerTestCase):
    """The gateway's end: every connection dropped."""

    def test_idle_connection_dropped(self) -> None:
        """A connection waiting for its next request is aborted."""
        protocol, transport = self.connect()
        protocol.factory.close_connections()
        self.assertTrue(transport.disconnected)

    def test_busy_connection_dropped(self) -> None:
        """A connection whose exchange is under way is aborted too, its answer not waited
        for."""
        protocol, transport = self.request(_GET)
        protocol.factory.close_connections()
        self.assertTrue(transport.disconnected)
