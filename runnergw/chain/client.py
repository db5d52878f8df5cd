"""The client as a terminal sees it: every response goes through the chain's response hooks.

A terminal is never given the connection itself. Its response head always runs the
``response_headers`` hooks; its body goes through the filters that observe the answer (per
NDJSON line, SSE event, whole JSON body or chunk), and reaches the client untouched and without
a copy when nobody observes it. A request body collected for the filters is replayed from
memory.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from runnergw.chain.exchange import EndStream, Exchange, Reject, Reply
from runnergw.chain.framing import EventFramer, FramingError, LineFramer, framing_of
from runnergw.chain.hookcalls import call_each, pass_through
from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream
from runnergw.logs import level_gate

if TYPE_CHECKING:
    from runnergw.chain.route import Route

__all__ = ["FilteredClient"]

_NO_BODY = frozenset({204, 304})
_HOOK_OF_FRAMING = {"ndjson": "response_line", "sse": "response_line",
                    "json": "response_body", "bytes": "response_chunk"}


@implementer(IPushProducer)
class _GatedProducer:
    """The terminal's producer, paused while the client is slow *or* a hook is pending."""

    def __init__(self, producer: IPushProducer) -> None:
        self.producer = producer
        self._reasons: set[str] = set()

    def _set(self, reason: str, paused: bool) -> None:
        before = bool(self._reasons)
        if paused:
            self._reasons.add(reason)
        else:
            self._reasons.discard(reason)
        after = bool(self._reasons)
        if after and not before:
            self.producer.pauseProducing()
        elif before and not after:
            self.producer.resumeProducing()

    def pauseProducing(self) -> None:
        self._set("client", True)

    def resumeProducing(self) -> None:
        self._set("client", False)

    def stopProducing(self) -> None:
        self.producer.stopProducing()

    def hold(self, held: bool) -> None:
        """Pause (or release) the producer while a hook's answer is awaited."""
        self._set("hook", held)


@implementer(IClientStream)
class FilteredClient:
    """One exchange's client stream, seen through its route's response hooks."""

    log = Logger(observer=level_gate)

    def __init__(self, route: Route, exchange: Exchange, client: IClientStream) -> None:
        self.route = route
        self.exchange = exchange
        self.client = client
        self.head_sent = False
        """True once a head was given (it may still wait for a hook or a whole JSON body)."""
        self._ended = False
        """The chain ended the answer itself (a filter's ``EndStream``, a failing hook)."""
        self._gone_callbacks: list[Callable[[], object]] = []
        self._producer: _GatedProducer | None = None
        self._framer: LineFramer | EventFramer | None = None
        self._hooks: list[Any] = []
        self._framing = ""
        self._held: deque[tuple[Callable[[Any], Any], Any]] | None = None
        """Operations waiting behind a hook that answers later (None: nothing waits)."""
        self._whole: list[bytes] | None = None
        self._whole_size = 0
        self._head: tuple[int, Headers, int | None] | None = None
        self._settled_waiters: list[Deferred[None]] = []
        client.when_gone(self._fire_gone)

    @property
    def record(self) -> Exchange:
        """The exchange (the server's record of it)."""
        return self.exchange

    @property
    def policy(self) -> Any:
        """The route's policy, as the server holds it."""
        return self.client.policy

    @property
    def gone(self) -> bool:
        """True once the client left or the chain ended the answer: stop producing."""
        return self._ended or self.client.gone

    # Request body

    def start_body(self, consumer: Any) -> None:
        """Feed the body to ``consumer``: from memory when the filters collected it."""
        body = self.exchange.request_body
        if body is None:
            self.client.start_body(consumer)
            return
        if body:
            consumer.body_data(body)
        consumer.body_done()

    async def body_complete(self) -> bool:
        """The whole body is in (collected, or stored by the terminal): run the
        ``request_body`` hooks. False when a filter answered instead (the answer is sent: the
        terminal stops); a filter's ``Reject`` propagates."""
        exchange = self.exchange
        pending = call_each(self.route.hooks.request_body, "request_body", exchange,
                            until_answered=True)
        if pending is not None:
            await pending
        if exchange.response is not None:
            self.reply(exchange.response)
            return False
        body = exchange.request_body
        if body is not None:
            if not isinstance(body, bytes):
                raise TypeError(f"exchange.request_body was set to {type(body).__name__}, "
                                "not bytes")
            # The terminal sends the body as the filters left it, with its own length.
            exchange.content_length = len(body)
        return True

    def pause_body(self) -> None:
        if self.exchange.request_body is None:
            self.client.pause_body()

    def resume_body(self) -> None:
        if self.exchange.request_body is None:
            self.client.resume_body()

    # Response

    def send_head(self, status: int, headers: Headers, length: int | None) -> None:
        """Run the ``response_headers`` hooks, then send the head (or hold it for observers)."""
        if self.head_sent or self.gone:
            return
        self.head_sent = True
        self.exchange.status = status
        self.exchange.response_headers = headers
        self._submit(self._run_head_hooks, length)

    def write(self, data: bytes) -> None:
        if self._ended or not data:
            return
        if self._held is not None:
            self._held.append((self._write_now, data))
        elif not self._framing:
            self.client.write(data)
        else:
            self._execute(self._write_now, data)

    def finish(self) -> None:
        if self._ended:
            return
        self._submit(self._finish_now, None)

    def abort(self, reason: str) -> None:
        if self._ended:
            return
        self._ended = True
        self.client.abort(reason)

    def register_producer(self, producer: IPushProducer) -> None:
        self._producer = _GatedProducer(producer)
        if self._held is not None:
            self._producer.hold(True)
        self.client.register_producer(self._producer)

    def unregister_producer(self) -> None:
        self._producer = None
        self.client.unregister_producer()

    def settled(self) -> Deferred[None]:
        """Fires once nothing waits behind a hook any more (or the answer was ended, or the
        client left): the exchange is over only then, even when its terminal is done."""
        waiter: Deferred[None] = Deferred()
        if self._held is None or self.gone:
            waiter.callback(None)
        else:
            self._settled_waiters.append(waiter)
        return waiter

    def _fire_settled(self) -> None:
        waiters, self._settled_waiters = self._settled_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def when_gone(self, callback: Callable[[], object]) -> None:
        if self.gone:
            callback()
        else:
            self._gone_callbacks.append(callback)

    def reply(self, reply: Reply, hooks: bool = True) -> None:
        """Answer with a complete response made by the gateway or a filter."""
        headers = Headers(reply.headers)
        headers.set("Content-Type", reply.content_type)
        if hooks:
            self.send_head(reply.status, headers, len(reply.body))
        else:
            self.head_sent = True
            self.exchange.status = reply.status
            self.exchange.response_headers = headers
            self._send_head_now(reply.status, headers, len(reply.body))
        if self.exchange.method != "HEAD":
            self.write(reply.body)
        self.finish()

    # The queue: operations wait, in order, behind a hook that answers later.

    def _submit(self, operation: Callable[[Any], Any], argument: Any) -> None:
        if self._held is not None:
            self._held.append((operation, argument))
        else:
            self._execute(operation, argument)

    def _execute(self, operation: Callable[[Any], Any], argument: Any) -> None:
        try:
            pending = operation(argument)
        except Exception:
            self._hook_failed(Failure())
            return
        if pending is not None:
            self._hold(pending)

    def _hold(self, pending: Deferred[Any]) -> None:
        self._held = deque()
        if self._producer is not None:
            self._producer.hold(True)
        pending.addCallbacks(self._release, self._hook_failed)

    def _release(self, _: object) -> None:
        held = self._held
        assert held is not None
        self._held = None
        # Once the client left, the exchange is over (its done hooks may have run): what
        # waited is dropped, never shown to a hook.
        while held and not self.gone:
            operation, argument = held.popleft()
            self._execute(operation, argument)
            if self._held is not None:  # waiting again: the rest waits behind it
                self._held.extend(held)
                return
        if self._producer is not None:
            self._producer.hold(False)
        self._fire_settled()

    # What the operations do

    def _run_head_hooks(self, length: int | None) -> Deferred[None] | None:
        try:
            pending = call_each(self.route.hooks.response_headers, "response_headers",
                                self.exchange)
        except Reject as rejection:
            self._refuse(rejection)
            return None
        if pending is None:
            self._choose_framing(length)
            return None
        return pending.addCallbacks(lambda _: self._choose_framing(length), self._head_refused)

    def _head_refused(self, failure: Failure) -> None:
        failure.trap(Reject)
        self._refuse(failure.value)

    def _refuse(self, rejection: Reject) -> None:
        """A response hook refused the answer: the client gets the route's error instead."""
        exchange = self.exchange
        exchange.outcome = "denied" if rejection.status in (401, 403) else "refused"
        exchange.reason = rejection.reason
        body = self.route.error_body(rejection.status, rejection.message)
        headers = Headers(rejection.headers)
        headers.set("Content-Type", "application/json; charset=utf-8")
        self._end_with(rejection.status, headers, body)

    def _choose_framing(self, length: int | None) -> None:
        exchange = self.exchange
        status, headers = exchange.status, exchange.response_headers
        observers = exchange.response_observers
        if (not observers or exchange.method == "HEAD" or status < 200
                or status in _NO_BODY or self._ended):
            self._send_head_now(status, headers, length)
            return
        if (headers.get("content-encoding") or "identity").lower() != "identity":
            raise _Unobservable("the runner's answer is content-encoded")
        framing = framing_of(headers.get("content-type"))
        observers = self._in_response_order(observers)
        hook_name = _HOOK_OF_FRAMING[framing]
        hooks = [getattr(o, hook_name) for o in observers if callable(getattr(o, hook_name, None))]
        if framing == "json" and not hooks:
            framing = "bytes"
            hooks = [o.response_chunk for o in observers
                     if callable(getattr(o, "response_chunk", None))]
        if not hooks:
            self._send_head_now(status, headers, length)
            return
        exchange.response_framing = self._framing = framing
        self._hooks = hooks
        limit = exchange.response_body_limit
        if framing == "json":
            if length is not None and length > limit:
                raise _Unobservable(f"the runner's answer is larger than {limit} bytes")
            self._whole = []
            self._head = (status, headers, length)
            return
        if framing == "ndjson":
            self._framer = LineFramer(limit)
        elif framing == "sse":
            self._framer = EventFramer(limit)
        # What the hooks write may differ in length: the answer is sent chunked.
        self._send_head_now(status, headers, None)

    def _in_response_order(self, observers: list[Any]) -> list[Any]:
        """As every response hook, the filter nearest the terminal first (objects that are
        no filter of the route after them, as they asked)."""
        rank = {id(step): index for index, step in enumerate(self.route.filters)}
        return sorted(observers, key=lambda o: rank.get(id(o), -1), reverse=True)

    def _send_head_now(self, status: int, headers: Headers, length: int | None) -> None:
        self.client.send_head(status, headers, length)

    def _write_now(self, data: bytes) -> Deferred[None] | None:
        if self.gone:
            return None
        if self._whole is not None:
            self._whole_size += len(data)
            if self._whole_size > self.exchange.response_body_limit:
                raise _Unobservable(
                    f"the runner's answer is larger than {self.exchange.response_body_limit} "
                    "bytes")
            self._whole.append(data)
            return None
        if self._framer is None:
            return self._pass_units([(data, b"")])
        try:
            units = self._framer.feed(data)
        except FramingError as e:
            raise _Unobservable(str(e)) from None
        return self._pass_units(units)

    def _pass_units(self, units: list[tuple[bytes, bytes]]) -> Deferred[None] | None:
        out: list[bytes] = []
        for index, (unit, end) in enumerate(units):
            pending = self._pass_unit(unit, end, out)
            if self.gone:
                return None
            if pending is not None:
                self._flush(out)
                rest = units[index + 1:]
                if rest:
                    pending.addCallback(self._submit_units, rest)
                return pending
        self._flush(out)
        return None

    def _submit_units(self, _: object, units: list[tuple[bytes, bytes]]) -> None:
        # Runs while the queue is held: these go first, before what arrived meanwhile.
        assert self._held is not None
        self._held.appendleft((self._pass_units, units))

    def _pass_unit(self, unit: bytes, end: bytes, out: list[bytes]) -> Deferred[None] | None:
        if self._framer is not None and not unit.strip():
            # A blank line between NDJSON lines or SSE events: relayed, shown to no hook.
            # (Every chunk of other answers is shown, however blank.)
            out.append(unit + end)
            return None
        try:
            result = pass_through(self._hooks, self.exchange, unit)
        except EndStream as stop:
            self._flush(out)
            self._end_stream(stop)
            return None
        if isinstance(result, Deferred):
            return result.addCallbacks(self._unit_ready, self._unit_failed,
                                       callbackArgs=(end,))
        if result:
            out.append(result + end)
        return None

    def _unit_ready(self, unit: bytes, end: bytes) -> None:
        if unit and not self.gone:
            self.client.write(unit + end)

    def _unit_failed(self, failure: Failure) -> None:
        if failure.check(EndStream):
            self._end_stream(failure.value)
            return None
        return failure  # type: ignore[return-value]

    def _flush(self, out: list[bytes]) -> None:
        if out:
            self.client.write(b"".join(out))
            out.clear()

    def _finish_now(self, _: object) -> Deferred[None] | None:
        if self.gone:
            return None
        if self._whole is not None:
            return self._finish_whole()
        if self._framer is not None:
            pending = self._pass_units(self._framer.flush())
            if pending is not None:
                return pending.addCallback(lambda _: self._submit(self._finish_now, None))
        if not self._ended:
            self.client.finish()
        return None

    def _finish_whole(self) -> Deferred[None] | None:
        body = b"".join(self._whole or ())
        self._whole = None
        try:
            result = pass_through(self._hooks, self.exchange, body)
        except EndStream as stop:
            result = stop.final
        if isinstance(result, Deferred):
            return result.addCallbacks(self._send_whole, self._whole_failed)
        self._send_whole(result)
        return None

    def _whole_failed(self, failure: Failure) -> None:
        if failure.check(EndStream):
            self._send_whole(failure.value.final)
            return None
        return failure  # type: ignore[return-value]

    def _send_whole(self, body: bytes) -> None:
        assert self._head is not None
        status, headers, _ = self._head
        self._framing = ""
        self.client.send_head(status, headers, len(body))
        self.client.write(body)
        self.client.finish()

    # Ending the answer from inside the chain

    def _end_stream(self, stop: EndStream) -> None:
        """A filter ended the answer: send its last unit, finish, and stop the terminal."""
        if self._ended:
            return
        exchange = self.exchange
        if exchange.outcome == "ok":
            exchange.outcome = "truncated"
            exchange.reason = stop.reason
        if stop.final:
            framer = self._framer
            self.client.write(stop.final + (framer.terminator if framer is not None else b""))
        self.client.finish()
        self._ended = True
        self._fire_gone()

    def _end_with(self, status: int, headers: Headers, body: bytes) -> None:
        """Answer with an error instead of what the terminal sends (nothing was sent yet)."""
        self._ended = True
        self.client.send_head(status, headers, len(body))
        if self.exchange.method != "HEAD":
            self.client.write(body)
        self.client.finish()
        self._fire_gone()

    def _hook_failed(self, failure: Failure) -> None:
        if self._ended:
            return
        exchange = self.exchange
        unobservable = failure.check(_Unobservable)
        if unobservable:
            self.log.warn("Request {request_id}: cannot observe the answer of {upstream}: "
                          "{problem}", request_id=exchange.request_id,
                          upstream=exchange.upstream, problem=str(failure.value))
            exchange.outcome = "upstream_error"
            exchange.reason = str(failure.value)
            status, message = 502, "the runner's answer could not be checked"
        else:
            self.log.failure("Request {request_id}: a response hook failed", failure=failure,
                             request_id=exchange.request_id)
            exchange.outcome = "error"
            exchange.reason = "internal error"
            status, message = 500, f"internal error (request {exchange.request_id})"
        if self.client.head_sent:
            self._ended = True
            self.client.abort(exchange.reason)
            self._fire_gone()
            return
        headers = Headers([("Content-Type", "application/json; charset=utf-8")])
        self._end_with(status, headers, self.route.error_body(status, message))

    def _fire_gone(self) -> None:
        callbacks, self._gone_callbacks = self._gone_callbacks, []
        for callback in callbacks:
            callback()
        self._fire_settled()


class _Unobservable(Exception):
    """An answer the observing filters cannot be shown whole (too long, encoded): a 502."""
