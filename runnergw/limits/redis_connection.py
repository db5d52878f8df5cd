"""A Twisted-native Redis client: what the shared limits need, nothing more.

txredisapi (1.6, maintained, Python 3.11 and current Twisted) was considered: it has EVALSHA,
unix sockets, TLS and reconnection, but at its reply timeout it fails every call waiting and
aborts the connection (one slow reply drops all the calls behind it), it arms a timer per
call, and its TLS takes an old-style context factory. The limits need a deadline per call
that leaves the connection and the replies still due in order, checked by one timer, and a
connection made on demand, again at most once per backoff interval while Redis is away.
This module speaks RESP2 for AUTH, SELECT, PING, EVALSHA (EVAL once
after NOSCRIPT) and the few plain commands used, with replies pipelined in order.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from twisted.internet import protocol
from twisted.internet.defer import Deferred, fail, gatherResults
from twisted.internet.interfaces import IReactorTime, IStreamClientEndpoint
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

__all__ = ["RedisConnection", "RedisError", "RedisUnavailable", "encode_command"]


class RedisUnavailable(Exception):
    """Redis did not answer: not connected, the connection was lost, or the deadline passed."""


class RedisError(Exception):
    """Redis answered with an error (``-ERR …``)."""


def encode_command(*args: bytes | str | int) -> bytes:
    """One command in RESP2 (an array of bulk strings)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg if isinstance(arg, bytes) else str(arg).encode()
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Incomplete(Exception):
    """More bytes are needed for the reply."""


def _parse(buffer: bytes, start: int) -> tuple[Any, int]:
    """One reply at ``start``: (the value, where the next reply starts)."""
    end = buffer.find(b"\r\n", start)
    if end < 0:
        raise _Incomplete
    kind, line = buffer[start:start + 1], buffer[start + 1:end]
    after = end + 2
    if kind == b"+":
        return line, after
    if kind == b"-":
        return RedisError(line.decode("utf-8", "replace")), after
    if kind == b":":
        return int(line), after
    if kind == b"$":
        size = int(line)
        if size < 0:
            return None, after
        if len(buffer) < after + size + 2:
            raise _Incomplete
        return buffer[after:after + size], after + size + 2
    if kind == b"*":
        count = int(line)
        if count < 0:
            return None, after
        items = []
        for _ in range(count):
            item, after = _parse(buffer, after)
            items.append(item)
        return items, after
    raise ValueError(f"not a RESP2 reply: {kind!r}")


class _RedisProtocol(protocol.Protocol):
    """Sends commands and hands each reply to the command that waits for it, in order; a
    command past its deadline was already failed, and its reply is dropped."""

    def __init__(self, clock: IReactorTime) -> None:
        self.clock = clock
        self._buffer = b""
        self.waiting: deque[tuple[Deferred[Any], float]] = deque()
        """Each command sent and not yet answered, with when it was sent."""
        self.lost: Deferred[None] = Deferred()

    def connectionMade(self) -> None:
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            set_no_delay(True)  # small requests answered at once: no Nagle delay

    def send(self, *args: bytes | str | int) -> Deferred[Any]:
        reply: Deferred[Any] = Deferred()
        self.waiting.append((reply, self.clock.seconds()))
        self.transport.write(encode_command(*args))  # type: ignore[union-attr]
        return reply

    def dataReceived(self, data: bytes) -> None:
        self._buffer += data
        start = 0
        try:
            while start < len(self._buffer):
                value, start = _parse(self._buffer, start)
                if not self.waiting:
                    raise ValueError("a reply no command waits for")
                reply, _ = self.waiting.popleft()
                if reply.called:
                    continue  # past its deadline: already failed
                if isinstance(value, RedisError):
                    reply.errback(Failure(value))
                else:
                    reply.callback(value)
        except _Incomplete:
            pass
        except ValueError:
            self.transport.loseConnection()  # type: ignore[union-attr]
        self._buffer = self._buffer[start:]

    def overdue(self, sent_before: float, stuck_before: float, why: str) -> None:
        """Fail the commands sent before ``sent_before``; close the connection when one
        was sent before ``stuck_before`` (Redis hangs: the connection is made again)."""
        for reply, sent in self.waiting:
            if sent >= sent_before:
                break
            if sent < stuck_before:
                self.transport.abortConnection()  # type: ignore[union-attr]
                return
            if not reply.called:
                reply.errback(Failure(RedisUnavailable(why)))

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        waiting, self.waiting = self.waiting, deque()
        for reply, _ in waiting:
            if not reply.called:
                reply.errback(Failure(RedisUnavailable("the connection to Redis was lost")))
        self.lost.callback(None)


class RedisConnection:
    """One connection to Redis, made when a call needs it; each call has a deadline.

    A call while not connected starts connecting (at most once per ``backoff`` seconds,
    doubling up to ``max_backoff`` while connecting fails) and waits for it within its own
    deadline; a call past its deadline fails with ``RedisUnavailable`` while its reply, when
    it comes, is read and dropped (the replies behind it stay in order).
    """

    log = Logger()

    def __init__(self, endpoint: IStreamClientEndpoint, clock: IReactorTime, timeout: float,
                 password: Callable[[], str | None] = lambda: None, database: int = 0,
                 backoff: float = 0.1, max_backoff: float = 2.0) -> None:
        self.endpoint = endpoint
        self.clock = clock
        self.timeout = timeout
        self._password = password
        self.database = database
        self._first_backoff = backoff
        self._backoff = backoff
        self._max_backoff = max_backoff
        self._protocol: _RedisProtocol | None = None
        self._connecting: list[Deferred[_RedisProtocol]] | None = None
        """The calls waiting while a connection is being made."""
        self._next_attempt = 0.0
        self._closed = False
        self._sweeper = LoopingCall(self._sweep)
        """Fails the calls past their deadline, checking every quarter of it (one timer
        for all calls, rather than one per call on the hot path)."""
        self._sweeper.clock = clock

    def _sweep(self) -> None:
        proto = self._protocol
        if proto is None or not proto.waiting:
            self._sweeper.stop()
            return
        now = self.clock.seconds()
        proto.overdue(now - self.timeout, now - max(2.0, 8 * self.timeout),
                      f"Redis did not answer within {self.timeout:g} s")

    @property
    def connected(self) -> bool:
        """True while a connection is open."""
        return self._protocol is not None

    def call(self, *args: bytes | str | int) -> Deferred[Any]:
        """Send one command: a Deferred of its reply (bytes, int, list or None), failing with
        ``RedisError`` (an error reply) or ``RedisUnavailable``."""
        if self._protocol is not None:
            if not self._sweeper.running:
                self._sweeper.start(self.timeout / 4, now=False)
            return self._protocol.send(*args)
        connected = self._connect()
        if connected is None:
            return fail(RedisUnavailable("Redis is not connected (waiting to try again)"))
        waiting: Deferred[Any] = Deferred()
        connected.addCallbacks(lambda proto: proto.send(*args).chainDeferred(waiting),
                               waiting.errback)
        return self._deadline(waiting)

    def _deadline(self, reply: Deferred[Any]) -> Deferred[Any]:
        """``reply`` within the deadline (for calls waiting for a connection)."""
        answer: Deferred[Any] = Deferred()
        timer = self.clock.callLater(self.timeout, lambda: answer.called or answer.errback(
            Failure(RedisUnavailable(f"Redis did not answer within {self.timeout:g} s"))))

        def settled(result: Any) -> None:
            if timer.active():
                timer.cancel()
            if not answer.called:
                answer.callback(result) if not isinstance(result, Failure) \
                    else answer.errback(result)

        reply.addBoth(settled)
        return answer

    def _connect(self) -> Deferred[_RedisProtocol] | None:
        if self._closed:
            return None
        if self._connecting is None:
            now = self.clock.seconds()
            if now < self._next_attempt:
                return None
            self._next_attempt = now + self._backoff
            self._connecting = []
            self._open()
        waiter: Deferred[_RedisProtocol] = Deferred()
        if self._connecting is None:  # connected (or refused) at once
            return self._connect_now(waiter)
        self._connecting.append(waiter)
        return waiter

    def _connect_now(self, waiter: Deferred[_RedisProtocol]) -> Deferred[_RedisProtocol]:
        if self._protocol is not None:
            waiter.callback(self._protocol)
        else:
            waiter.errback(Failure(RedisUnavailable("cannot connect to Redis")))
        return waiter

    def _open(self) -> None:
        factory = protocol.Factory()
        factory.protocol = lambda: _RedisProtocol(self.clock)  # type: ignore[assignment]
        opened = self.endpoint.connect(factory)
        opened.addCallback(self._hello)
        opened.addCallbacks(self._opened, self._failed)

    def _hello(self, proto: _RedisProtocol) -> Any:
        """AUTH and SELECT before any call; an error closes the connection."""
        steps = []
        password = self._password()
        if password:
            steps.append(proto.send("AUTH", password))
        if self.database:
            steps.append(proto.send("SELECT", self.database))
        if not steps:
            return proto

        def refused(failure: Failure) -> None:
            proto.transport.loseConnection()  # type: ignore[union-attr]
            # The reason Redis gave (wrong password, no such database): never the password.
            reason = failure.value.subFailure.value  # type: ignore[attr-defined]
            raise RedisUnavailable(f"Redis refused the connection: {reason}")

        done = gatherResults(steps, consumeErrors=True)
        return done.addCallbacks(lambda _: proto, refused)

    def _opened(self, proto: _RedisProtocol) -> None:
        waiting, self._connecting = self._connecting or [], None
        self._backoff = self._first_backoff
        if self._closed:
            proto.transport.loseConnection()  # type: ignore[union-attr]
            failure = Failure(RedisUnavailable("the connection to Redis was closed"))
            for waiter in waiting:
                waiter.errback(failure)
            return
        self._protocol = proto
        proto.lost.addCallback(self._lost, proto)
        for waiter in waiting:
            waiter.callback(proto)

    def _failed(self, failure: Failure) -> None:
        waiting, self._connecting = self._connecting or [], None
        self._next_attempt = self.clock.seconds() + self._backoff
        self._backoff = min(self._max_backoff, self._backoff * 2)
        if not failure.check(RedisUnavailable):
            failure = Failure(RedisUnavailable(
                f"cannot connect to Redis: {failure.getErrorMessage()}"))
        for waiter in waiting:
            waiter.errback(failure)

    def _lost(self, _: None, proto: _RedisProtocol) -> None:
        if self._protocol is proto:
            self._protocol = None

    def close(self) -> None:
        """Close the connection; calls from now on fail."""
        self._closed = True
        if self._sweeper.running:
            self._sweeper.stop()
        proto, self._protocol = self._protocol, None
        if proto is not None:
            proto.transport.loseConnection()  # type: ignore[union-attr]
