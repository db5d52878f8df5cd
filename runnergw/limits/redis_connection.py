"""A Twisted-native Redis client: what the shared limits need, nothing more.

txredisapi (1.6, maintained, Python 3.11 and current Twisted) was considered: it has EVALSHA,
unix sockets, TLS and reconnection, but at its reply timeout it fails every call waiting and
aborts the connection (one slow reply drops all the calls behind it), it arms a timer per
call, and its TLS takes an old-style context factory. The limits need a deadline per call
that leaves the connection and the replies still due in order, checked by one timer, and a
connection made on demand, again at most once per backoff interval while Redis is away.
This module sends AUTH, SELECT, PING, EVAL, EVALSHA and the few plain commands used, with
replies pipelined in order; a call past its deadline can learn what came of it (``Late``).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet import protocol
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.limits.redis_resp import (
    Incomplete,
    RedisError,
    RedisUnavailable,
    encode_command,
    parse_reply,
)

__all__ = ["Late", "RedisConnection", "RedisError", "RedisNotSent", "RedisUnavailable",
           "encode_command"]


Late = Callable[[Any], None]
"""Told, once, what came of a call that failed with ``RedisUnavailable``: its reply when it
comes after all (a value, or a ``Failure`` of ``RedisError``), else a ``Failure`` of
``RedisUnavailable`` once none can come (never sent, or the connection was lost: Redis may
or may not have run it). So what a call did after its caller gave up can be undone."""


class RedisNotSent(RedisUnavailable):
    """A call that failed before it was sent: Redis surely did not run it."""


@attrs.frozen
class _Sent:
    reply: Deferred[Any]
    since: float
    """When its deadline started."""
    late: Late | None


@attrs.frozen
class _Queued:
    """A call waiting for the connection to open (failed at its deadline, never sent)."""

    command: bytes
    since: float
    late: Late | None
    reply: Deferred[Any]

    def fail(self, failure: Failure) -> None:
        failure = Failure(RedisNotSent(failure.getErrorMessage()))
        self.reply.errback(failure)
        if self.late is not None:
            _tell_late(self.late, failure)


_log = Logger()


def _tell_late(late: Late, outcome: Any) -> None:
    try:
        late(outcome)
    except Exception:
        _log.failure("A late Redis reply could not be handled", event="redis_late_failed")


class _RedisProtocol(protocol.Protocol):
    """Sends commands and hands each reply to the command that waits for it, in order; a
    command past its deadline was already failed, and its reply goes to its ``late``."""

    def __init__(self) -> None:
        self._buffer = b""
        self.waiting: deque[_Sent] = deque()
        """Each command sent and not yet answered."""
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)  # small requests answered at once: no Nagle delay

    def send(self, command: bytes, since: float, late: Late | None = None) -> Deferred[Any]:
        """Send an encoded command; ``since`` is when its deadline started."""
        reply: Deferred[Any] = Deferred()
        self.waiting.append(_Sent(reply, since, late))
        self.transport.write(command)  # type: ignore[union-attr]
        return reply

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        start = 0
        try:
            while start < len(self._buffer):
                value, start = parse_reply(self._buffer, start)
                if not self.waiting:
                    raise ValueError("a reply no command waits for")
                sent = self.waiting.popleft()
                outcome = Failure(value) if isinstance(value, RedisError) else value
                if not sent.reply.called:
                    sent.reply.callback(outcome) if not isinstance(outcome, Failure) \
                        else sent.reply.errback(outcome)
                elif sent.late is not None:
                    _tell_late(sent.late, outcome)  # past its deadline: already failed
        except Incomplete:
            pass
        except ValueError:
            self.transport.loseConnection()  # type: ignore[union-attr]
        self._buffer = self._buffer[start:]

    def overdue(self, sent_before: float, stuck_before: float, why: str) -> bool:
        """Fail the commands sent before ``sent_before``; close the connection when one
        was sent before ``stuck_before`` (Redis hangs: the connection is made again)."""
        due = []
        for sent in self.waiting:
            if sent.since >= sent_before:
                break
            if sent.since < stuck_before:
                self.transport.abortConnection()  # type: ignore[union-attr]
                return True
            due.append(sent)
        for sent in due:  # failed once the walk is over: a caller told may call again
            if not sent.reply.called:
                sent.reply.errback(Failure(RedisUnavailable(why)))
        return False

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        waiting, self.waiting = self.waiting, deque()
        self.lost.callback(None)  # first: a call made by a caller told below opens anew
        for sent in waiting:
            lost = Failure(RedisUnavailable("the connection to Redis was lost"))
            if not sent.reply.called:
                sent.reply.errback(lost)
            if sent.late is not None:
                _tell_late(sent.late, lost)  # Redis may or may not have run it


class RedisConnection:
    """One connection to Redis, made when a call needs it; each call has a deadline.

    A call while not connected starts connecting (at most once per ``backoff`` seconds,
    doubling up to ``max_backoff`` while connecting fails) and waits for it within its own
    deadline (one whose deadline passes first is never sent). Opening the connection (AUTH,
    SELECT included) is given up after ``stuck_after`` seconds. A call past its deadline
    fails with ``RedisUnavailable``; its reply, when it comes, is read and given to the
    call's ``late`` (the replies behind it stay in order).
    """

    log = Logger()

    def __init__(self, endpoint: IStreamClientEndpoint, clock: IReactorTime, timeout: float,
                 password: Callable[[], str | None] = lambda: None, database: int = 0,
                 backoff: float = 0.1, max_backoff: float = 2.0) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.timeout = timeout
        self.stuck_after = max(2.0, 8 * timeout)
        """Seconds after which a command still unanswered, or a connection still not open,
        counts as Redis hanging: the connection is given up and made again."""
        self._password = password
        self.database = database
        self._first_backoff = backoff
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._protocol: _RedisProtocol | None = None
        self._opening: Deferred[_RedisProtocol] | None = None
        self._queued: deque[_Queued] = deque()
        """The calls waiting while the connection is being made, oldest first."""
        self._next_attempt = 0.0
        self._closed = False
        self.before_call: Callable[[], None] | None = None
        """Run before each call is sent: what waits to go with the next call is sent first,
        in the same write (it may call again: it has nothing left to send by then)."""
        self.scripts: set[str] = set()
        """The SHA1s of the scripts sent whole on the connection open now."""
        self._sweeper = LoopingCall(self._sweep)
        """Fails the calls past their deadline, checking every quarter of it (one timer
        for all calls, rather than one per call on the hot path)."""
        self._sweeper.clock = clock

    def _watch(self) -> None:
        if not self._sweeper.running and not self._closed:
            self._sweeper.start(self.timeout / 4, now=False)

    def _sweep(self) -> None:
        now = self.clock.seconds()
        why = f"Redis did not answer within {self.timeout:g} s"
        while self._queued and self._queued[0].since <= now - self.timeout:
            self._queued.popleft().fail(Failure(RedisUnavailable(why)))
        proto = self._protocol
        if proto is not None and proto.overdue(now - self.timeout, now - self.stuck_after, why):
            self.log.warn("Redis did not answer for {seconds:g} s: the connection is made again",
                          seconds=self.stuck_after, event="redis_connection_given_up")
        idle = not self._queued and (proto is None or not proto.waiting)
        if idle and self._sweeper.running:  # a call failed above may have closed it
            self._sweeper.stop()

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._protocol is not None

    def call(self, *args: bytes | str | int, late: Late | None = None) -> Deferred[Any]:
        """Send one command: a Deferred of its reply (bytes, int, list or None), failing with
        ``RedisError`` (an error reply) or ``RedisUnavailable``; ``late`` learns what came
        of a call that failed after it was sent (see ``Late``)."""
        if self.before_call is not None:
            self.before_call()
        if self._protocol is None and self._opening is None:
            self._open_when_due()
        now = self.clock.seconds()
        if self._protocol is not None:
            reply = self._protocol.send(encode_command(*args), now, late)
        elif self._opening is not None:
            reply = Deferred()
            self._queued.append(_Queued(encode_command(*args), now, late, reply))
        else:
            why = "the connection to Redis was closed" if self._closed else \
                "Redis is not connected (waiting to try again)"
            reply = Deferred()
            _Queued(b"", now, late, reply).fail(Failure(RedisUnavailable(why)))
            return reply
        self._watch()
        return reply

    def _open_when_due(self) -> None:
        now = self.clock.seconds()
        if self._closed or now < self._next_attempt:
            return
        self._next_attempt = now + self._backoff
        greeting: list[_RedisProtocol] = []
        connecting = self._opening = self.endpoint.connect(
            protocol.Factory.forProtocol(_RedisProtocol))

        def too_long() -> None:
            self.log.warn("Redis did not open the connection within {seconds:g} s: it is "
                          "made again", seconds=self.stuck_after,
                          event="redis_connection_given_up")
            if greeting:
                greeting[0].transport.abortConnection()  # type: ignore[union-attr]
            else:
                connecting.cancel()

        timer = self.clock.callLater(self.stuck_after, too_long)

        def hello(proto: _RedisProtocol) -> Any:
            greeting.append(proto)
            return self._hello(proto)

        def settled(result: Any) -> Any:
            if timer.active():
                timer.cancel()
            elif isinstance(result, Failure):
                result = Failure(RedisUnavailable(
                    f"Redis did not open the connection within {self.stuck_after:g} s"))
            return result

        connecting.addCallback(hello).addBoth(settled).addCallbacks(self._opened, self._failed)

    def _hello(self, proto: _RedisProtocol) -> Any:
        """AUTH and SELECT before any call; an error closes the connection."""
        steps = []
        now = self.clock.seconds()
        password = self._password()
        if password:
            steps.append(proto.send(encode_command("AUTH", password), now))
        if self.database:
            steps.append(proto.send(encode_command("SELECT", self.database), now))
        if not steps:
            return proto

        def refused(failure: Failure) -> None:
            proto.transport.loseConnection()  # type: ignore[union-attr]
            reason = failure.value.subFailure  # type: ignore[attr-defined]
            if reason.check(RedisUnavailable):
                reason.raiseException()
            # The reason Redis gave (wrong password, no such database): never the password.
            raise RedisUnavailable(f"Redis refused the connection: {reason.value}")

        done = gatherResults(steps, consumeErrors=True)
        return done.addCallbacks(lambda _: proto, refused)

    def _opened(self, proto: _RedisProtocol) -> None:
        self._opening = None
        self._backoff = self._first_backoff
        if self._closed:
            proto.transport.loseConnection()  # type: ignore[union-attr]
            return
        self._protocol = proto
        proto.lost.addCallback(self._lost, proto)
        queued, self._queued = self._queued, deque()
        for call in queued:
            proto.send(call.command, call.since, call.late).chainDeferred(call.reply)

    def _failed(self, failure: Failure) -> None:
        self._opening = None
        self._next_attempt = self.clock.seconds() + self._backoff
        self._backoff = min(self._max_backoff, self._backoff * 2)
        if not failure.check(RedisUnavailable):
            failure = Failure(RedisUnavailable(
                f"cannot connect to Redis: {failure.getErrorMessage()}"))
        queued, self._queued = self._queued, deque()
        for call in queued:
            call.fail(failure)

    def _lost(self, _: None, proto: _RedisProtocol) -> None:
        if self._protocol is proto:
            self._protocol = None
            self.scripts.clear()

    def close(self) -> None:
        """Close the connection; calls from now on fail."""
        self._closed = True
        if self._sweeper.running:
            self._sweeper.stop()
        queued, self._queued = self._queued, deque()
        for call in queued:
            call.fail(Failure(RedisUnavailable("the connection to Redis was closed")))
        if self._opening is not None:
            self._opening.cancel()  # no connection made after the close, no timer left
        proto, self._protocol = self._protocol, None
        if proto is not None:
            proto.transport.loseConnection()  # type: ignore[union-attr]
