"""One persistent HTTP/1.1 connection to a runner, carrying one exchange at a time."""

from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Protocol as TypingProtocol

from twisted.internet.error import ConnectionLost
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.http.body import BodyDecoder
from runnergw.logs import level_gate
from runnergw.upstream.response import (
    MAX_HEAD_BYTES,
    ResponseHead,
    UpstreamProtocolError,
    body_decoder,
    parse_response_head,
)

if TYPE_CHECKING:
    from runnergw.upstream.pool import UpstreamPool

__all__ = ["ResponseHandler", "UpstreamConnection"]


class ResponseHandler(TypingProtocol):
    """Receives a runner's response as it arrives."""

    def response_head(self, head: ResponseHead) -> None:
        """The status line and headers are in."""

    def response_data(self, data: bytes) -> None:
        """A piece of the (decoded) body."""

    def response_done(self) -> None:
        """The body is complete."""

    def response_failed(self, reason: Exception) -> None:
        """The connection broke or the runner spoke bad HTTP before the response was complete."""


class UpstreamConnection(Protocol):
    """Writes a request and parses the response; the pool keeps it between exchanges."""

    log = Logger(observer=level_gate)

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        self.reused = False
        """True when this exchange is not the connection's first."""
        self._handler: ResponseHandler | None = None
        self._method = ""
        self._buffer = b""
        self._head: ResponseHead | None = None
        self._decoder: BodyDecoder | None = None
        self._chunked_request = False
        self.request_complete = True
        self.response_complete = True
        self.lost = False
        self.answered = False
        """True once the runner's response to the current request came in whole."""
        self.dropped = False
        """True when the runner closed the connection in the middle of the current exchange
        (its response head seen, or on a fresh connection): a reset, not a keep-alive
        connection it had closed while idle."""
        self._broken = False
        self._reading_paused = False

    # Life of the connection

    def connectionMade(self) -> None:
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)
        self.pool.connection_made(self)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        self.lost = True
        handler, self._handler = self._handler, None
        if handler is not None and not self.response_complete:
            self.response_complete = True
            if self._decoder is not None and self._head is not None and (
                self._head.content_length is None and not self._head.chunked
            ):
                self.answered = True
                handler.response_done()
            else:
                self.dropped = self._head is not None or not self.reused
                handler.response_failed(ConnectionLost("the runner closed the connection"))
        self.pool.connection_lost(self)

    @property
    def reusable(self) -> bool:
        """True when another exchange can follow on this connection."""
        return (
            not self.lost
            and self.request_complete
            and self.response_complete
            and self._head is not None
            and self._head.keep_alive
            and not self._buffer
            and not self._broken
        )

    def abort(self) -> None:
        """Drop the connection now (the runner sees it close and stops generating)."""
        self._handler = None
        self._broken = True
        if not self.lost:
            self.transport.abortConnection()

    def close(self) -> None:
        """Close an idle connection politely."""
        if not self.lost:
            self.transport.loseConnection()

    # Request

    def send_request(self, method: str, head: bytes, handler: ResponseHandler,
                     body: str) -> None:
        """Write the request head; ``body`` is ``none``, ``length`` or ``chunked``."""
        self._handler = handler
        self._method = method
        self._head = None
        self._decoder = None
        self._buffer = b""
        self._chunked_request = body == "chunked"
        self.answered = self.dropped = False
        self.request_complete = body == "none"
        self.response_complete = False
        self.resume_reading()
        self.transport.write(head)

    def write_body(self, data: bytes) -> None:
        """Send a piece of the request body."""
        if not data or self.lost or self.request_complete:
            return  # an empty chunk would be the last one: the runner would see the body end
        if self._chunked_request:
            self.transport.writeSequence([b"%x\r\n" % len(data), data, b"\r\n"])
        else:
            self.transport.write(data)

    def end_body(self) -> None:
        """The request body is complete."""
        if self.lost or self.request_complete:
            return
        if self._chunked_request:
            self.transport.write(b"0\r\n\r\n")
        self.request_complete = True

    # Response

    def pause_reading(self) -> None:
        """Stop reading from the runner (the client is slow); TCP slows the runner down."""
        if not self._reading_paused and not self.lost:
            self._reading_paused = True
            self.transport.pauseProducing()

    def resume_reading(self) -> None:
        """Read from the runner again."""
        if self._reading_paused and not self.lost:
            self._reading_paused = False
            self.transport.resumeProducing()

    def dataReceived(self, data: bytes) -> None:
        if self._handler is None:
            # Nothing was asked: a runner talking out of turn cannot be trusted with the next.
            self.abort()
            return
        if self._head is None:
            data = self._read_head(data)
            if self._head is None or self._handler is None:
                return
        self._read_body(data)

    def _read_head(self, data: bytes) -> bytes:
        self._buffer += data
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > MAX_HEAD_BYTES:
                    self._fail(UpstreamProtocolError("response head too large"))
                elif b"\n\n" in self._buffer:
                    # Lines ended by a bare LF: the CRLFCRLF awaited would never come.
                    self._fail(UpstreamProtocolError("bare LF in the response head"))
                return b""
            block, self._buffer = self._buffer[:end], self._buffer[end + 4 :]
            try:
                head = parse_response_head(block, self._method)
            except UpstreamProtocolError as e:
                self._fail(e)
                return b""
            if head.status == 101:
                # Nothing asked to switch protocols: what follows is not HTTP/1.1 any more.
                self._fail(UpstreamProtocolError("unrequested 101 Switching Protocols"))
                return b""
            if 100 <= head.status < 200:
                continue  # an interim response (100 Continue, 103 Early Hints)
            self._head = head
            self._decoder = body_decoder(head, self._method)
            rest, self._buffer = self._buffer, b""
            assert self._handler is not None
            self._handler.response_head(head)
            return rest

    def _read_body(self, data: bytes) -> None:
        decoder = self._decoder
        assert decoder is not None
        if data:
            try:
                pieces, leftover = decoder.feed(data)
            except UpstreamProtocolError as e:
                self._fail(e)
                return
            for piece in pieces:
                if self._handler is None:
                    return
                self._handler.response_data(piece)
            self._buffer = leftover
        if decoder.done and self._handler is not None:
            handler, self._handler = self._handler, None
            self.response_complete = True
            self.answered = True
            handler.response_done()

    def _fail(self, reason: UpstreamProtocolError) -> None:
        self.log.warn("runner {runner} sent an invalid response: {problem}",
                      runner=self.pool.name, problem=str(reason))
        handler, self._handler = self._handler, None
        self.response_complete = True
        self._broken = True
        if not self.lost:
            self.transport.abortConnection()
        if handler is not None:
            handler.response_failed(reason)
