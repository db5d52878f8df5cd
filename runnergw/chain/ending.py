"""How the chain ends an answer itself, instead of relaying the terminal's to its end: a
filter's ``EndStream``, a failure or refusal, the gateway stopping (``end_now``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from runnergw.chain.exchange import EndStream, Exchange
from runnergw.chain.final_error import RETRY_AFTER, final_error_unit, unit_separator
from runnergw.chain.framing import framing_of
from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream

if TYPE_CHECKING:
    from runnergw.chain.observation import ObservedAnswer
    from runnergw.chain.route import Route

__all__ = ["AnswerEnding"]


class AnswerEnding:
    """The ways ``FilteredClient`` ends an answer; what they share is its state."""

    exchange: Exchange
    client: IClientStream
    route: Route
    _ended: bool
    _observed: ObservedAnswer | None
    _length: int | None
    _tail: bytes
    _fire_gone: Callable[[], None]

    def fail(self, status: int, message: str, headers: Headers | None = None,
             reason: str | None = None) -> None:
        """Answer with the route's error instead of the answer under way, when nothing of it
        reached the client yet (its head may be held for observers); else drop the connection
        (``reason`` says why)."""
        if self._ended:
            return
        if self.client.head_sent:
            self._ended = True
            self.client.abort(reason or message)
            self._fire_gone()
            return
        headers = headers if headers is not None else Headers()
        headers.set("Content-Type", "application/json; charset=utf-8")
        self._end_with(status, headers, self.route.error_body_for(self.exchange.api_path)(
            status, message))

    def end_stream(self, stop: EndStream) -> None:
        """A filter ended the answer: send its last unit, finish, and stop the terminal."""
        if self._ended:
            return
        self.exchange.record_truncation(stop)
        if stop.final:
            framer = self._observed.framer if self._observed is not None else None
            self.client.write(stop.final + (framer.terminator if framer is not None else b""))
        self.client.finish()
        self._ended = True
        self._fire_gone()

    def end_now(self, message: str) -> None:
        """The gateway stops (``ITerminal.stop``): end the answer under way now, cleanly.

        Nothing of it reached the client yet: a 503 with ``Retry-After``. A streamed NDJSON or
        SSE answer: a last error line or event after what was relayed, then its proper end.
        Anything else already under way cannot end well: its connection is dropped.
        """
        if self._ended or self.client.gone:
            return
        exchange = self.exchange
        if exchange.outcome == "ok":
            exchange.outcome = "shutdown"
            exchange.reason = "the gateway stopped before the answer was complete"
        if not self.client.head_sent:
            self.fail(503, message, Headers([("Retry-After", RETRY_AFTER)]),
                      reason=exchange.reason)
            return
        observed = self._observed
        if observed is not None:
            framing, tail = observed.framing, b""  # observers relay whole units only
        else:
            framing = framing_of(exchange.response_headers.get("content-type")) \
                if self._length is None else "bytes"
            tail = self._tail
        unit = final_error_unit(framing, message)
        self._ended = True
        if unit is None:
            self.client.abort(exchange.reason or message)
        else:
            self.client.write(unit_separator(framing, tail) + unit)
            self.client.finish()
        self._fire_gone()

    def _end_with(self, status: int, headers: Headers, body: bytes) -> None:
        """Answer with an error instead of what the terminal sends (nothing was sent yet)."""
        self._ended = True
        self.client.send_head(status, headers, len(body))
        if self.exchange.method != "HEAD":
            self.client.write(body)
        self.client.finish()
        self._fire_gone()
