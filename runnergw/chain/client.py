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

from runnergw.chain.admission import settle_admission, wait_for_client
from runnergw.chain.body import body_as_left, run_body_hooks
from runnergw.chain.ending import AnswerEnding
from runnergw.chain.exchange import EndStream, Exchange, Reject, Reply
from runnergw.chain.hookcalls import call_each
from runnergw.chain.observation import ObservedAnswer, Unobservable, observe
from runnergw.chain.producer import GatedProducer
from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream
from runnergw.logs import level_gate

if TYPE_CHECKING:
    from runnergw.chain.route import Route

__all__ = ["FilteredClient"]



@implementer(IClientStream)
class FilteredClient(AnswerEnding):
    """One exchange's client stream, seen through its route's response hooks."""

    log = Logger(observer=level_gate)

    def __init__(self, route: Route, exchange: Exchange, client: IClientStream) -> None:
        self.exchange = exchange
        self.stream = client
        """The client's own stream; ``client`` is it as the route's heads reach it."""
        self.client = client
        self.route = route
        self.head_sent = False
        """True once a head was given (it may still wait for a hook or a whole JSON body)."""
        self._ended = False
        """The chain ended the answer itself (a filter's ``EndStream``, a failing hook)."""
        self._finished = False
        """The terminal said the answer is complete: what it writes after is dropped."""
        self._gone_callbacks: list[Callable[[], object]] = []
        self._producer: GatedProducer | None = None
        self._observed: ObservedAnswer | None = None
        """The answer as its observers see it (None: nobody observes it, it is relayed)."""
        self._held: deque[tuple[Callable[[Any], Any], Any]] | None = None
        """Operations waiting behind a hook that answers later (None: nothing waits)."""
        self._settled_waiters: list[Deferred[None]] = []
        self._length: int | None = None
        """The length the terminal gave its answer (None: streamed)."""
        self._tail = b""
        """The last two bytes relayed untouched (where a unit may have been cut short)."""
        client.when_gone(self._fire_gone)

    @property
    def route(self) -> Route:
        """The route being served (the chain sets it once it matched the path)."""
        return self._route

    @route.setter
    def route(self, route: Route) -> None:
        self._route = route
        timing = route.server_timing
        # Every head goes to the client through ``client`` (observed answers' too), so the
        # route's Server-Timing header is added there, whoever sends it.
        self.client = self.stream if timing is None else timing.stream(self.stream,
                                                                       self.exchange)

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
        terminal stops) or the client left while a hook waited; a filter's ``Reject``
        propagates."""
        pending = run_body_hooks(self.route, self.exchange)
        if pending is not None and not await wait_for_client(pending, self.exchange, self):
            return False
        if body_as_left(self.exchange):
            return True
        # Checks held for the body hooks come before a hook's own answer.
        if not await settle_admission(self.exchange, self):
            return False
        assert self.exchange.response is not None
        self.reply(self.exchange.response)
        return False

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
        self._length = length
        self.exchange.status = status
        self.exchange.response_headers = headers
        self._submit(self._run_head_hooks, length)

    def write(self, data: bytes) -> None:
        if self._ended or self._finished or not data:
            return
        if self._held is not None:
            self._held.append((self._write_now, data))
            return
        observed = self._observed
        if observed is None:
            self._tail = data[-2:] if len(data) > 1 else self._tail[-1:] + data
            self.client.write(data)
            return
        # What _execute(_write_now, data) does, without its calls: this runs per write of
        # every observed answer.
        try:
            pending = observed.write(data)
        except Exception:
            self._hook_failed(Failure())
            return
        if pending is not None:
            self._hold(pending)

    def finish(self) -> None:
        if self._ended or self._finished:
            return
        self._finished = True
        if self._held is None and self._observed is None:
            self.client.finish()
        else:
            self._submit(self._finish_now, None)

    def abort(self, reason: str) -> None:
        if self._ended:
            return
        if self.head_sent and not self.client.head_sent:
            # The runner broke off an answer whose head was held for its observers: nothing
            # reached the client yet, so it learns why instead of seeing a reset.
            self.fail(502, "the runner's answer broke off before it was complete",
                      reason=reason)
            return
        self._ended = True
        self.client.abort(reason)

    def register_producer(self, producer: IPushProducer) -> None:
        self._producer = GatedProducer(producer)
        if self._held is not None:
            self._producer.hold(True)
        self.client.register_producer(self._producer)

    def unregister_producer(self) -> None:
        self._producer = None
        self.client.unregister_producer()

    @property
    def busy(self) -> bool:
        """True while something waits behind a hook that answers later."""
        return self._held is not None and not self.gone

    def settled(self) -> Deferred[None]:
        """Fires once nothing waits behind a hook any more (or the answer was ended, or the
        client left): the exchange is over only then, even when its terminal is done."""
        waiter: Deferred[None] = Deferred()
        if self.busy:
            self._settled_waiters.append(waiter)
        else:
            waiter.callback(None)
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
            self.client.send_head(reply.status, headers, len(reply.body))
        if self.exchange.method != "HEAD":
            self.write(reply.body)
        self.finish()

    # The queue: operations wait, in order, behind a hook that answers later.

    def _submit(self, operation: Callable[[Any], Any], argument: Any) -> None:
        if self._held is not None:
            self._held.append((operation, argument))
        else:
            self._execute(operation, argument)

    def put_first(self, operation: Callable[[Any], Any], argument: Any) -> None:
        """Run ``operation(argument)`` before what already waits (the queue is held)."""
        assert self._held is not None
        self._held.appendleft((operation, argument))

    put_last = _submit

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
        except EndStream as stop:
            self._end_at_head(stop)
            return None
        if pending is None:
            self._start_answer(length)
            return None
        return pending.addCallbacks(lambda _: self._start_answer(length), self._head_refused)

    def _head_refused(self, failure: Failure) -> None:
        failure.trap(Reject, EndStream)
        if failure.check(EndStream):
            self._end_at_head(failure.value)
        else:
            self._refuse(failure.value)

    def _end_at_head(self, stop: EndStream) -> None:
        """A ``response_headers`` hook ended the answer before its body: the head goes out
        with ``stop.final`` as the whole body, and the terminal is told to stop."""
        if self._ended:
            return
        exchange = self.exchange
        exchange.record_truncation(stop)
        self._end_with(exchange.status, exchange.response_headers, stop.final)

    def _refuse(self, rejection: Reject) -> None:
        """A response hook refused the answer: the client gets the route's error instead."""
        if self._ended:
            return
        self.exchange.record_refusal(rejection)
        # While nothing of the answer reached the client (a whole JSON answer held for its
        # observers), the refusal; after, the connection is cut: the status cannot change.
        self.fail(rejection.status, rejection.message, Headers(rejection.headers),
                  reason=rejection.reason)

    def _start_answer(self, length: int | None) -> None:
        if self._ended:
            return
        exchange = self.exchange
        observed = observe(self, exchange, self.route.filters, length) \
            if exchange.response_observers else None
        if observed is None:
            self.client.send_head(exchange.status, exchange.response_headers, length)
            return
        self._observed = observed
        observed.start()

    def _write_now(self, data: bytes) -> Deferred[None] | None:
        if self.gone:
            return None
        if self._observed is None:
            self._tail = data[-2:] if len(data) > 1 else self._tail[-1:] + data
            self.client.write(data)
            return None
        return self._observed.write(data)

    def _finish_now(self, _: object) -> Deferred[None] | None:
        if self.gone:
            return None
        if self._observed is None:
            self.client.finish()
            return None
        return self._observed.finish()

    def _hook_failed(self, failure: Failure) -> None:
        if self._ended:
            return
        if failure.check(Reject):
            self._refuse(failure.value)
            return
        exchange = self.exchange
        unobservable = failure.check(Unobservable)
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
        self.fail(status, message, reason=exchange.reason)

    def _fire_gone(self) -> None:
        callbacks, self._gone_callbacks = self._gone_callbacks, []
        for callback in callbacks:
            callback()
        self._fire_settled()
