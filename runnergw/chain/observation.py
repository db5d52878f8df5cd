"""An answer on its way through the filters that observe it.

Chosen by the answer's media type once its head is in: NDJSON lines and SSE events pass the
``response_line`` hooks one by one (the answer then goes on chunked, as a hook may change a
line's length); a JSON answer is held whole, within a bound, for ``response_body`` (its head
waits for it, and carries the new length); anything else passes ``response_chunk`` per write.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure

from runnergw.chain.exchange import EndStream, Exchange
from runnergw.chain.framing import EventFramer, FramingError, LineFramer, framing_of
from runnergw.chain.hookcalls import pass_on, pass_through
from runnergw.http.headers import Headers

if TYPE_CHECKING:
    from runnergw.http.interfaces import IClientStream

__all__ = ["ObservedAnswer", "Unobservable", "observe"]

_NO_BODY = frozenset({204, 304})
_HOOK_OF_FRAMING = {"ndjson": "response_line", "sse": "response_line",
                    "json": "response_body", "bytes": "response_chunk"}

Pending = Deferred[Any] | None
"""What a step returns: None when done, a Deferred when a hook answers later."""


class Unobservable(Exception):
    """An answer the observing filters cannot be shown whole (too long, encoded): a 502."""


class AnswerOwner(Protocol):
    """What an observed answer needs of the client stream it belongs to."""

    client: IClientStream
    gone: bool

    def end_stream(self, stop: EndStream) -> None:
        """A filter ended the answer."""

    def put_first(self, step: Any, argument: Any) -> None:
        """Run ``step(argument)`` before what already waits (the queue is held)."""

    def put_last(self, step: Any, argument: Any) -> None:
        """Run ``step(argument)`` after what already waits."""


def _in_response_order(observers: list[Any], filters: tuple[Any, ...]) -> list[Any]:
    """As every response hook, the filter nearest the terminal first (objects that are no
    filter of the route after them, as they asked)."""
    rank = {id(step): index for index, step in enumerate(filters)}
    return sorted(observers, key=lambda o: rank.get(id(o), -1), reverse=True)


def observe(owner: AnswerOwner, exchange: Exchange, filters: tuple[Any, ...],
            length: int | None) -> ObservedAnswer | None:
    """The observed answer the head in ``exchange`` starts, or None when no filter observes
    it (its head is then to be sent as it is).

    Raises:
        Unobservable: the observers cannot be shown this answer.
    """
    status, headers = exchange.status, exchange.response_headers
    observers = exchange.response_observers
    if (not observers or exchange.method == "HEAD" or status < 200 or status in _NO_BODY):
        return None
    if (headers.get("content-encoding") or "identity").lower() != "identity":
        raise Unobservable("the runner's answer is content-encoded")
    framing = framing_of(headers.get("content-type"))
    observers = _in_response_order(observers, filters)
    hook_name = _HOOK_OF_FRAMING[framing]
    hooks = [getattr(o, hook_name) for o in observers if callable(getattr(o, hook_name, None))]
    if framing == "json" and not hooks:
        framing = "bytes"
        hooks = [o.response_chunk for o in observers
                 if callable(getattr(o, "response_chunk", None))]
    if not hooks:
        return None
    limit = exchange.response_body_limit
    if framing == "json" and length is not None and length > limit:
        raise Unobservable(f"the runner's answer is larger than {limit} bytes")
    exchange.response_framing = framing
    return ObservedAnswer(owner, exchange, _distinct(hooks), framing, limit)


def _distinct(hooks: list[Any]) -> list[Any]:
    """``hooks``, each a different object: an observed answer tells which hook answered by
    identity. (Methods are bound anew for each observer; a function shared by several, a
    static method, is wrapped for every observer after the first.)"""
    seen: set[int] = set()
    distinct = []
    for hook in hooks:
        if id(hook) in seen:
            hook = _Alias(hook)
        seen.add(id(hook))
        distinct.append(hook)
    return distinct


class _Alias:
    """A hook called through another object."""

    def __init__(self, hook: Any) -> None:
        self.hook = hook
        self.__qualname__ = getattr(hook, "__qualname__", type(hook).__qualname__)

    def __call__(self, exchange: Exchange, value: bytes) -> Any:
        return self.hook(exchange, value)


class ObservedAnswer:
    """Passes an answer's units through its observers' hooks, keeping their order."""

    def __init__(self, owner: AnswerOwner, exchange: Exchange, hooks: list[Any],
                 framing: str, limit: int) -> None:
        self.owner = owner
        self.exchange = exchange
        self.hooks = hooks
        self.framing = framing
        self.limit = limit
        self.framer: LineFramer | EventFramer | None = (
            LineFramer(limit) if framing == "ndjson"
            else EventFramer(limit) if framing == "sse" else None)
        self._whole: list[bytes] | None = [] if framing == "json" else None
        self._whole_size = 0

    @property
    def holds_head(self) -> bool:
        """True for a whole JSON answer: its head is sent with the body, once it is in."""
        return self.framing == "json"

    def start(self) -> None:
        """Send the head, unless it waits for the whole body."""
        if not self.holds_head:
            # What the hooks write may differ in length: the answer is sent chunked.
            self.owner.client.send_head(self.exchange.status, self.exchange.response_headers,
                                        None)

    def write(self, data: bytes) -> Pending:
        """Pass ``data`` (as it came) through the observers."""
        owner = self.owner
        if owner.gone:
            return None
        framer = self.framer
        if framer is None:
            if self._whole is not None:
                self._whole_size += len(data)
                if self._whole_size > self.limit:
                    raise Unobservable(
                        f"the runner's answer is larger than {self.limit} bytes")
                self._whole.append(data)
                return None
            return self._pass_units([(data, b"")])
        try:
            whole, units, ends = framer.take(data)
        except FramingError as e:
            raise Unobservable(str(e)) from None
        # Each complete unit goes through the hooks. As long as every hook keeps every unit
        # as it is (returns None: no rewrite, no drop, nothing to wait for), the units are
        # relayed as they came, in one write, without being put together again.
        hooks, exchange = self.hooks, self.exchange
        index = 0
        try:
            for index, unit in enumerate(units):
                if not unit.strip():
                    continue  # a blank line between units: relayed, shown to no hook
                for hook in hooks:
                    result = hook(exchange, unit)
                    if result is not None:
                        return self._divert(whole, units, ends, index, hook, result)
                if owner.gone:
                    return None
        except EndStream as stop:
            self._relay_first(whole, units, ends, index)
            owner.end_stream(stop)
            return None
        if whole:
            owner.client.write(whole)
        return None

    def finish(self, _: object = None) -> Pending:
        """The answer is complete: pass what is left, then finish it."""
        if self.owner.gone:
            return None
        if self._whole is not None:
            return self._finish_whole()
        if self.framer is not None:
            pending = self._pass_units(self.framer.flush())
            if pending is not None:
                return pending.addCallback(lambda _: self.owner.put_last(self.finish, None))
        if not self.owner.gone:
            self.owner.client.finish()
        return None

    # Units: lines, events, chunks

    @staticmethod
    def _offset(units: list[bytes], ends: list[bytes] | None, count: int) -> int:
        """Where the first ``count`` units of a framer's ``take`` end in its bytes."""
        if ends is None:  # each unit ends with one newline
            return sum(map(len, units[:count])) + count
        return sum(map(len, units[:count])) + sum(map(len, ends[:count]))

    def _relay_first(self, whole: bytes, units: list[bytes], ends: list[bytes] | None,
                     count: int) -> None:
        """Relay the first ``count`` units of ``whole`` as they came."""
        offset = self._offset(units, ends, count)
        if offset:
            self.owner.client.write(whole[:offset])

    def _divert(self, whole: bytes, units: list[bytes], ends: list[bytes] | None,
                index: int, hook: Any, result: Any) -> Pending:
        """``hook`` did not just keep unit ``index`` of ``whole`` (the hooks before it did,
        and every hook kept the units before it): those go as they came, this one goes on
        from ``hook``'s answer, and the rest one by one."""
        offset = self._offset(units, ends, index)
        out = [whole[:offset]] if offset else []
        position = next(i for i, each in enumerate(self.hooks) if each is hook)
        end = b"\n" if ends is None else ends[index]
        pending = self._pass_unit(units[index], end, out, (position, result))
        if self.owner.gone:
            return None
        following = units[index + 1:]
        rest = [(unit, b"\n") for unit in following] if ends is None \
            else list(zip(following, ends[index + 1:], strict=True))
        if pending is not None:
            return self._wait(pending, out, rest)
        return self._pass_units(rest, out)

    def _pass_units(self, units: list[tuple[bytes, bytes]],
                    out: list[bytes] | None = None) -> Pending:
        if out is None:
            out = []
        for index, (unit, end) in enumerate(units):
            pending = self._pass_unit(unit, end, out)
            if self.owner.gone:
                return None
            if pending is not None:
                return self._wait(pending, out, units[index + 1:])
        self._flush(out)
        return None

    def _wait(self, pending: Deferred[Any], out: list[bytes],
              rest: list[tuple[bytes, bytes]]) -> Deferred[Any]:
        """A unit's hook answers later: what came before it goes now, what follows it in
        the same write waits for it."""
        self._flush(out)
        if rest:
            # Runs while the queue is held: these go first, before what came since.
            pending.addCallback(lambda _: self.owner.put_first(self._pass_units, rest))
        return pending

    def _pass_unit(self, unit: bytes, end: bytes, out: list[bytes],
                   resume: tuple[int, Any] | None = None) -> Pending:
        """Pass one unit (``resume``: from where hook number ``resume[0]`` answered
        ``resume[1]``, the hooks before it having kept the unit)."""
        if self.framer is not None and not unit.strip():
            # A blank line between NDJSON lines or SSE events: relayed, shown to no hook.
            # (Every chunk of other answers is shown, however blank.)
            out.append(unit + end)
            return None
        try:
            result = pass_through(self.hooks, self.exchange, unit) if resume is None \
                else pass_on(self.hooks, resume[0], self.exchange, unit, resume[1])
        except EndStream as stop:
            self._flush(out)
            self.owner.end_stream(stop)
            return None
        if isinstance(result, Deferred):
            return result.addCallbacks(self._unit_ready, self._unit_failed,
                                       callbackArgs=(end,))
        if result:
            out.append(result + end)
        return None

    def _unit_ready(self, unit: bytes, end: bytes) -> None:
        if unit and not self.owner.gone:
            self.owner.client.write(unit + end)

    def _unit_failed(self, failure: Failure) -> Failure | None:
        if failure.check(EndStream):
            self.owner.end_stream(failure.value)
            return None
        return failure

    def _flush(self, out: list[bytes]) -> None:
        if out:
            self.owner.client.write(b"".join(out))
            out.clear()

    # A whole JSON answer

    def _finish_whole(self) -> Pending:
        body = b"".join(self._whole or ())
        self._whole = None
        try:
            result = pass_through(self.hooks, self.exchange, body)
        except EndStream as stop:
            self.exchange.record_truncation(stop)
            result = stop.final
        if isinstance(result, Deferred):
            return result.addCallbacks(self._send_whole, self._whole_failed)
        self._send_whole(result)
        return None

    def _whole_failed(self, failure: Failure) -> Failure | None:
        if failure.check(EndStream):
            self.exchange.record_truncation(failure.value)
            self._send_whole(failure.value.final)
            return None
        return failure

    def _send_whole(self, body: bytes) -> None:
        client = self.owner.client
        headers: Headers = self.exchange.response_headers
        client.send_head(self.exchange.status, headers, len(body))
        client.write(body)
        client.finish()
