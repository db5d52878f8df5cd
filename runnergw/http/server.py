"""The gateway's HTTP/1.1 server protocol.

Written for a gateway rather than a web application: the request head is parsed strictly and
within a deadline, the exchange starts before any body byte is read (so tokens are checked
first and ``100 Continue`` is only sent after), bodies stream with backpressure in both
directions, and the terminal learns at once when its client goes away.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import TYPE_CHECKING

from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.http.errors import BadRequest
from runnergw.http.head import RequestHead, parse_request_head
from runnergw.http.scan import HeadScanner, skip_empty_lines
from runnergw.http.status import status_line
from runnergw.http.stream import ClientStream, DiscardBody
from runnergw.logs import level_gate

if TYPE_CHECKING:
    from runnergw.http.factory import GatewayHTTPFactory

__all__ = ["GatewayHTTPProtocol"]

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
_PIPELINE_BUFFER = 65536
_LINGER_BYTES = 1 << 20
_LINGER_SECONDS = 2.0
_DISCARD_LIMIT = 1 << 20
"""A refused request's unread body up to this size is drained so the connection lives on."""


class GatewayHTTPProtocol(Protocol):
    """HTTP/1.1 server side of one client connection; one exchange at a time."""

    log = Logger(observer=level_gate)

    def __init__(self, factory: GatewayHTTPFactory) -> None:
        self.factory = factory
        self.handler = factory.handler
        self.limits = factory.limits
        self.timeouts = factory.timeouts
        self.clock = factory.clock
        self.dates = factory.dates
        self.secure = factory.secure
        self._buffer = b""
        self._current: ClientStream | None = None
        self._closed = False
        self._timer: IDelayedCall | None = None
        self._timer_kind = ""
        self._lingering: int | None = None
        self._paused: set[str] = set()
        self._reading_paused = False
        self._parsing = False
        self._parse_again = False
        self._scanner = HeadScanner(self.limits)

    # Connection life

    def connectionMade(self) -> None:
        # Small writes (one streamed token) must leave at once, not wait for a delayed ACK.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.factory.connections.add(self)
        self._start_timer("header", self.timeouts.header, self._head_timed_out)

    @property
    def idle(self) -> bool:
        """True between requests (no exchange under way on the connection)."""
        return self._current is None and not self._closed

    def close_if_idle(self) -> None:
        """Close the connection now if it waits for a next request with nothing of one
        received (the gateway stops)."""
        if self.idle and not self._buffer:
            self._close()

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.factory.connections.discard(self)
        self._closed = True
        self._stop_timer()
        if self._current is not None:
            self._current.connection_lost()

    def abort_connection(self) -> None:
        self._closed = True
        self.transport.abortConnection()

    def _close(self) -> None:
        self._closed = True
        self._stop_timer()
        self.transport.loseConnection()

    def _start_timer(self, kind: str, seconds: float, action: Callable[[], None]) -> None:
        self._stop_timer()
        self._timer = self.clock.callLater(seconds, action)
        self._timer_kind = kind

    def _stop_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        self._timer_kind = ""

    def set_paused(self, reason: str, paused: bool) -> None:
        """Pause reading from the client while any reason holds."""
        if paused:
            self._paused.add(reason)
        else:
            self._paused.discard(reason)
        self._update_reading()

    def _update_reading(self) -> None:
        want_paused = bool(self._paused)
        if want_paused != self._reading_paused and not self._closed:
            self._reading_paused = want_paused
            if want_paused:
                self.transport.pauseProducing()
            else:
                self.transport.resumeProducing()

    # Reading

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        if self._lingering is not None:
            self._lingering -= len(data)
            if self._lingering <= 0:
                self._close()
            return
        current = self._current
        if current is not None and current.reading_body() and not self._buffer:
            current.body_received(data)
            return
        self._buffer += data
        if current is None:
            self._parse_requests()
        elif len(self._buffer) > _PIPELINE_BUFFER:
            self.set_paused("buffer", True)

    def _parse_requests(self) -> None:
        """Parse buffered requests one after the other.

        A loop rather than recursion: an exchange that ends at once (a refusal) starts the
        next pipelined request from inside its own call, one level deeper each time.
        """
        if self._parsing:
            self._parse_again = True
            return
        self._parsing = True
        try:
            self._parse_again = True
            while self._parse_again and self._current is None and not self._closed:
                self._parse_again = False
                self._parse_head()
        finally:
            self._parsing = False

    def _parse_head(self) -> None:
        try:
            buffer = skip_empty_lines(self._buffer)
        except BadRequest as e:
            self._refuse(e)
            return
        if buffer in (b"", b"\r"):
            # Only empty lines so far: they start no deadline.
            self._buffer = buffer
            return
        if self._timer_kind != "header":
            self._start_timer("header", self.timeouts.header, self._head_timed_out)
        end = self._scanner.find_end(buffer)
        if end < 0:
            self._buffer = buffer
            error = self._scanner.partial_error(buffer)
            if error is not None:
                # Waiting for the rest would only hold the connection until the deadline.
                self._refuse(error)
            return
        self._scanner.reset()
        self._buffer = buffer[end + 4 :]
        try:
            head = parse_request_head(buffer[:end], self.limits)
        except BadRequest as e:
            self._refuse(e)
            return
        self._stop_timer()
        self._start_exchange(head)

    def _head_timed_out(self) -> None:
        self._timer = None
        self._timer_kind = ""
        if self._buffer not in (b"", b"\r"):
            self._refuse(BadRequest(408, "request header timeout"))
        else:
            self._close()

    def _refuse(self, error: BadRequest, stream: ClientStream | None = None) -> None:
        """Answer a request that could not be parsed or read, then close.

        ``stream`` is given once the exchange exists (a body refused midway): the answer then
        carries its request id, which the audit trail records, in its route's error shape.
        """
        self.log.info(
            "Refused a malformed request from {peer}: {status} {message}",
            event="bad_request", peer=self.transport.getPeer().host,
            status=error.status, message=error.message,
        )
        if stream is None:  # no exchange: the chain (and its metrics) never saw it
            refused = self.factory.refused
            refused[error.status] = refused.get(error.status, 0) + 1
        policy = stream.policy if stream is not None else self.factory.default_policy
        body = policy.error_body(error.status, error.message)
        request_id_field = b"" if stream is None else b"X-Request-Id: %s\r\n" % (
            stream.request_id.encode("ascii"))
        self.transport.write(
            status_line(error.status) + b"Content-Type: application/json; charset=utf-8\r\n"
            b"Content-Length: %d\r\n%sConnection: close\r\n\r\n%s"
            % (len(body), request_id_field, body)
        )
        self._close()

    # Exchanges

    def _new_request_id(self, head: RequestHead) -> str:
        offered = head.headers.get("x-request-id")
        if offered is not None and _REQUEST_ID.fullmatch(offered):
            return offered
        return os.urandom(16).hex()

    def _start_exchange(self, head: RequestHead) -> None:
        stream = ClientStream(self, head, self._new_request_id(head),
                              self.transport.getPeer().host, self.secure, self.clock.seconds())
        self._current = stream
        if head.has_body and (head.content_length is None
                              or len(self._buffer) < head.content_length):
            # No more of the body is read before the exchange asks for it (its filters may
            # refuse it). A body already here whole costs nothing to keep: reading on then
            # only buffers a pipelined request, within the pipeline limit.
            self.set_paused("body-wait", True)
        self.handler.handle(stream).addBoth(self._exchange_over, stream)

    def body_started(self) -> None:
        """The exchange asked for the body: feed what is buffered, then read on."""
        stream = self._current
        assert stream is not None
        self.set_paused("body-wait", False)
        if self._buffer:
            data, self._buffer = self._buffer, b""
            stream.body_received(data)
        elif stream.reading_body():
            stream.wait_for_more()

    def keep_for_next_request(self, leftover: bytes) -> None:
        """Bytes received after the end of a body: the start of the next request."""
        if leftover:
            self._buffer = leftover + self._buffer

    def body_finished(self, stream: ClientStream) -> None:
        """The whole body is in; move on if the response is out too."""
        if stream.response_done:
            self._next_request(stream)

    def refuse_mid_body(self, stream: ClientStream, error: BadRequest) -> None:
        """The body broke the rules (bad chunking, too large, too slow)."""
        exchange = stream.record
        if exchange.outcome == "ok":
            exchange.outcome = "client_error"
            exchange.reason = error.message
        if stream.head_sent or stream.response_done:
            self.abort_connection()
            stream.connection_lost()
        else:
            exchange.status = error.status
            stream.response_done = True
            stream.connection_lost()
            self._refuse(error, stream)

    def may_keep_alive(self, stream: ClientStream) -> bool:
        """Whether the connection can carry another request after this response.

        An unread body is drained only when its length is declared, small, and within the
        route's limit, and when the client did not wait for ``100 Continue``: such a client
        may never send the body it announced, and what it sends next must not be taken for it.
        Never once the gateway stops (``GatewayHTTPFactory.close_when_idle``).
        """
        if self.factory.closing:
            return False
        if stream.body_complete or stream.reading_body():
            return True
        if stream.head.expect_continue:
            return False
        length = stream.head.content_length
        route_limit = stream.policy.max_body_size
        limit = _DISCARD_LIMIT if route_limit is None else min(_DISCARD_LIMIT, route_limit)
        return length is not None and length <= limit

    def response_finished(self, stream: ClientStream) -> None:
        """The response is out; read the next request once the body is consumed too."""
        if not stream.keep_alive or self.factory.closing:
            if stream.reading_body():
                self._linger(stream)
            else:
                self._close()
            return
        if not stream.body_complete and not stream.reading_body():
            stream.start_body(DiscardBody())
        if stream.body_complete:
            self._next_request(stream)

    def _linger(self, stream: ClientStream) -> None:
        """Close a connection whose client is still sending a refused body.

        Closing at once would reset the connection, and the client's TCP stack may then drop
        the answer before the client reads it; so the rest of the body is read and dropped for a
        short while (nginx's lingering close), and the connection closed after.
        """
        self._lingering = _LINGER_BYTES
        self.set_paused("upstream", False)
        self._start_timer("linger", _LINGER_SECONDS, self._close)

    def _next_request(self, stream: ClientStream) -> None:
        if self._closed or stream is not self._current:
            return
        self._current = None
        self._paused.clear()
        self._update_reading()
        self._start_timer("keep-alive", self.timeouts.keep_alive, self._close)
        if self._buffer:
            self._parse_requests()

    def _exchange_over(self, result: object, stream: ClientStream) -> None:
        if isinstance(result, Failure):
            # The gateway is not supposed to fail; if it does, the failure must not vanish.
            self.log.failure("Request {request_id} failed in the gateway", failure=result,
                             request_id=stream.request_id)
        if stream.gone or stream.response_done:
            return
        # The gateway ended without finishing the response: nothing more will come.
        self.log.warn("Request {request_id} ended without a complete response",
                      request_id=stream.request_id)
        stream.abort("no response")
