"""One exchange's view of its client connection: body in, response out, disconnect news."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer
from zope.interface import implementer

from runnergw.http.body import BodyDecoder, ChunkedDecoder, FixedLengthDecoder
from runnergw.http.errors import BadRequest
from runnergw.http.head import RequestHead
from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream, StreamPolicy, StreamRecord
from runnergw.http.status import status_line
from runnergw.http.timers import BodyRateWatch

if TYPE_CHECKING:
    from runnergw.http.server import GatewayHTTPProtocol

__all__ = ["ClientStream", "DiscardBody", "StallWatch"]

_NO_BODY_STATUSES = frozenset({204, 304})


@implementer(IPushProducer)
class StallWatch:
    """Stands between the client transport and a response producer to time write stalls."""

    def __init__(self, stream: ClientStream, producer: IPushProducer) -> None:
        self._stream = stream
        self._producer = producer
        self._timer: IDelayedCall | None = None

    def pauseProducing(self) -> None:
        protocol = self._stream.protocol
        if self._timer is None:
            self._timer = protocol.clock.callLater(
                protocol.timeouts.write, self._stream.stalled
            )
        self._producer.pauseProducing()

    def resumeProducing(self) -> None:
        self.cancel()
        self._producer.resumeProducing()

    def stopProducing(self) -> None:
        self.cancel()
        self._producer.stopProducing()

    def cancel(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


@implementer(IClientStream)
class ClientStream:
    """One exchange's view of its client connection."""

    def __init__(self, protocol: GatewayHTTPProtocol, head: RequestHead, request_id: str,
                 client_address: str, secure: bool, started: float) -> None:
        self.protocol = protocol
        self.head = head
        self.request_id = request_id
        self.client_address = client_address
        self.secure = secure
        self.started = started
        """Clock reading when the request head was complete."""
        self.record: Any = StreamRecord(request_id)
        """The exchange's record (``MessageRecord``): the handler puts its own in."""
        self.policy: StreamPolicy = protocol.factory.default_policy
        """The route's ``StreamPolicy``: the handler sets it once it knows the route."""
        self.head_sent = False
        self.response_done = False
        self.gone = False
        self.keep_alive = head.keep_alive
        self._chunked = False
        self._no_body = head.method == "HEAD"
        self._decoder: BodyDecoder | None = None
        self._consumer: Any = None
        self.body_complete = not head.has_body
        self._read_timer: IDelayedCall | None = None
        timeouts = protocol.timeouts
        self._rate = BodyRateWatch(protocol.clock, timeouts.min_body_data_rate,
                                   timeouts.min_body_data_rate_grace, self._too_slow)
        self._gone_callbacks: list[Callable[[], object]] = []
        self._watch: StallWatch | None = None

    # Request body

    def start_body(self, consumer: Any) -> None:
        if self.gone and not self.body_complete:
            # The client left before its body was asked for: the consumer must hear of it,
            # or whoever waits for the body waits for ever.
            consumer.body_failed(ConnectionError("client disconnected before its body was read"))
            return
        if self._consumer is not None or self.body_complete:
            return
        self._consumer = consumer
        self._decoder = (FixedLengthDecoder(self.head.content_length)
                         if self.head.content_length is not None else ChunkedDecoder())
        if self.head.expect_continue and not self.head_sent:
            self.protocol.transport.write(status_line(100) + b"\r\n")
        # The body's time starts now: the client was not asked for it before.
        self._rate.start()
        self.protocol.body_started()

    def body_received(self, data: bytes) -> None:
        """Decode ``data``; returns nothing, hands leftover bytes back to the protocol."""
        assert self._decoder is not None
        self._rate.received(len(data))
        try:
            pieces, leftover = self._decoder.feed(data)
        except BadRequest as e:
            self.protocol.refuse_mid_body(self, e)
            return
        limit = self._chunked_body_limit()
        for piece in pieces:
            if limit is not None and self.record.bytes_in + len(piece) > limit:
                self.protocol.refuse_mid_body(
                    self, BadRequest(413, f"request body larger than {limit} bytes")
                )
                return
            self.record.bytes_in += len(piece)
            self._consumer.body_data(piece)
        if self._decoder.done:
            self.body_complete = True
            self._cancel_read_timer()
            self._rate.stop()
            # The bytes after the body belong to the next request: hand them over before the
            # consumer hears of the end, as it may finish the response (and so start that
            # request) right there.
            self.protocol.keep_for_next_request(leftover)
            self._consumer.body_done()
            self.protocol.body_finished(self)
        else:
            self.wait_for_more()

    def _chunked_body_limit(self) -> int | None:
        """The route's body size limit when the body is chunked (a declared length was
        checked against it before the exchange started)."""
        if self.head.content_length is not None:
            return None
        return self.policy.max_body_size

    def reading_body(self) -> bool:
        return self._consumer is not None and not self.body_complete

    def pause_body(self) -> None:
        self._cancel_read_timer()
        self._rate.pause()
        self.protocol.set_paused("upstream", True)

    def resume_body(self) -> None:
        if self.reading_body():
            self._rate.start()
            self.wait_for_more()
        self.protocol.set_paused("upstream", False)

    def wait_for_more(self) -> None:
        """The body is not complete: wait for more, within the idle and rate limits."""
        timer = self._read_timer
        if timer is not None and timer.active():
            timer.reset(self.protocol.timeouts.read)
        else:
            self._read_timer = self.protocol.clock.callLater(
                self.protocol.timeouts.read, self._read_timed_out
            )
        self._rate.waiting()

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None and self._read_timer.active():
            self._read_timer.cancel()
        self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        self.record.outcome = "timeout"
        self.record.reason = "client stopped sending the request body"
        self.protocol.refuse_mid_body(self, BadRequest(408, "request body read timed out"))

    def _too_slow(self) -> None:
        self._cancel_read_timer()
        self.record.outcome = "timeout"
        self.record.reason = "client sent the request body too slowly"
        self.protocol.refuse_mid_body(
            self, BadRequest(408, "request body arrived slower than the minimum data rate"))

    # Response

    def send_head(self, status: int, headers: Headers, length: int | None) -> None:
        if self.head_sent or self.gone:
            return
        self.head_sent = True
        if status >= 400 and self.reading_body():
            # Refused while the body is still coming (an upload over its limit): answer, then
            # close instead of reading the rest of a possibly huge body.
            self.keep_alive = False
        exchange = self.record
        exchange.status = status
        exchange.first_byte_at = self.protocol.clock.seconds()
        headers.remove_all(("connection", "keep-alive", "transfer-encoding", "content-length"))
        if status in _NO_BODY_STATUSES or status < 200:
            self._no_body = True
        elif length is not None:
            headers.add("Content-Length", str(length))
        elif not self._no_body:
            if self.head.version == "HTTP/1.1":
                headers.add("Transfer-Encoding", "chunked")
                self._chunked = True
            else:
                self.keep_alive = False
        if "date" not in headers:
            headers.add("Date", self.protocol.dates.now())
        headers.set("X-Request-Id", exchange.request_id)
        if not self.keep_alive or not self.protocol.may_keep_alive(self):
            self.keep_alive = False
            headers.add("Connection", "close")
        elif self.head.version == "HTTP/1.0":
            headers.add("Connection", "keep-alive")
        self.protocol.transport.writeSequence([status_line(status), headers.encode(), b"\r\n"])

    def write(self, data: bytes) -> None:
        if not data or self._no_body or self.gone or self.response_done:
            return
        self.record.bytes_out += len(data)
        if self._chunked:
            self.protocol.transport.writeSequence([b"%x\r\n" % len(data), data, b"\r\n"])
        else:
            self.protocol.transport.write(data)

    def finish(self) -> None:
        if self.response_done or self.gone:
            return
        self.response_done = True
        self.record.finished_at = self.protocol.clock.seconds()
        if self._chunked:
            self.protocol.transport.write(b"0\r\n\r\n")
        self.unregister_producer()
        self.protocol.response_finished(self)

    def abort(self, reason: str) -> None:
        if self.gone:
            return
        self.response_done = True
        self.record.finished_at = self.protocol.clock.seconds()
        self.unregister_producer()
        self.protocol.abort_connection()

    def register_producer(self, producer: IPushProducer) -> None:
        if self.gone:
            producer.stopProducing()
            return
        self.unregister_producer()
        self._watch = StallWatch(self, producer)
        self.protocol.transport.registerProducer(self._watch, True)

    def unregister_producer(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
            if not self.gone:
                self.protocol.transport.unregisterProducer()

    def stalled(self) -> None:
        """The client took no bytes for the write timeout: give up on it."""
        self.record.outcome = "timeout"
        self.record.reason = "client stopped reading the response"
        self.abort("write timeout")

    def when_gone(self, callback: Callable[[], object]) -> None:
        if self.gone:
            callback()
        else:
            self._gone_callbacks.append(callback)

    def connection_lost(self) -> None:
        """The connection closed (by either side)."""
        if self.gone:
            return
        self.gone = True
        self._cancel_read_timer()
        self._rate.stop()
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if not self.response_done:
            # Recorded first: the consumer told below may end the exchange on the spot.
            self.record.finished_at = self.protocol.clock.seconds()
            if self.record.outcome == "ok":
                self.record.outcome = "client_gone"
                self.record.reason = "client disconnected before the response was complete"
        if self.reading_body():
            self._consumer.body_failed(ConnectionError("client disconnected during the body"))
        callbacks, self._gone_callbacks = self._gone_callbacks, []
        for callback in callbacks:
            callback()


class DiscardBody:
    """Drains the unread body of a refused request so the connection can be reused."""

    def body_data(self, data: bytes) -> None:
        pass

    def body_done(self) -> None:
        pass

    def body_failed(self, reason: Exception) -> None:
        pass
