"""Calling hooks that answer now or later: no Deferred when every hook answered at once."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Reject, Reply
from runnergw.chain.hookcalls import call_each, pass_on, pass_through
from runnergw.testing import make_exchange

__all__ = ["CallEachTests", "PassOnTests", "PassThroughTests"]


class _Step:
    """A filter whose ``request_headers`` records its name and returns ``result``."""

    def __init__(self, name: str, journal: list[str], result: Any = None,
                 answer: bool = False) -> None:
        self.name = name
        self.journal = journal
        self.result = result
        self.answer = answer

    def request_headers(self, exchange: Any) -> Any:
        self.journal.append(self.name)
        if self.answer:
            exchange.response = Reply(200, b"{}")
        return self.result


class CallEachTests(SynchronousTestCase):
    """``call_each``: request, response-head and done hooks in turn."""

    def test_all_at_once(self) -> None:
        """Hooks that return nothing all run, in order, and no Deferred is made."""
        journal: list[str] = []
        steps = [_Step("a", journal), _Step("b", journal), _Step("c", journal)]
        self.assertIsNone(call_each(steps, "request_headers", make_exchange()))
        self.assertEqual(journal, ["a", "b", "c"])

    def test_fired_deferred_counts_as_now(self) -> None:
        """A hook returning an already-fired Deferred or a finished coroutine does not make
        the caller wait."""
        journal: list[str] = []

        async def finished(exchange: Any) -> None:
            journal.append("coroutine")

        coroutine_step = _Step("x", journal)
        coroutine_step.request_headers = finished  # type: ignore[method-assign]
        steps = [_Step("a", journal, succeed(None)), coroutine_step, _Step("b", journal)]
        self.assertIsNone(call_each(steps, "request_headers", make_exchange()))
        self.assertEqual(journal, ["a", "coroutine", "b"])

    def test_later_holds_the_rest(self) -> None:
        """A hook answering later holds the hooks after it until it fires."""
        journal: list[str] = []
        pending: Deferred[None] = Deferred()
        steps = [_Step("a", journal), _Step("b", journal, pending), _Step("c", journal)]
        result = call_each(steps, "request_headers", make_exchange())
        self.assertIsInstance(result, Deferred)
        self.assertEqual(journal, ["a", "b"])
        pending.callback(None)
        self.assertEqual(journal, ["a", "b", "c"])
        self.assertIsNone(self.successResultOf(result))

    def test_reject_now(self) -> None:
        """A hook raising Reject stops the others and the Reject reaches the caller."""
        journal: list[str] = []

        def refuse(exchange: Any) -> None:
            journal.append("refuse")
            raise Reject(403, "no")

        refusing = _Step("r", journal)
        refusing.request_headers = refuse  # type: ignore[method-assign]
        error = self.assertRaises(Reject, call_each, [refusing, _Step("b", journal)],
                                  "request_headers", make_exchange())
        self.assertEqual((error.status, journal), (403, ["refuse"]))

    def test_reject_from_finished_coroutine(self) -> None:
        """A coroutine that refused without waiting raises at once, not through a Deferred."""

        async def refuse(exchange: Any) -> None:
            raise Reject(401, "who are you")

        step = _Step("r", [])
        step.request_headers = refuse  # type: ignore[method-assign]
        error = self.assertRaises(Reject, call_each, [step], "request_headers",
                                  make_exchange())
        self.assertEqual(error.status, 401)

    def test_reject_later(self) -> None:
        """A Deferred failing with Reject fails the caller's Deferred; later hooks do not run."""
        journal: list[str] = []
        pending: Deferred[None] = Deferred()
        result = call_each([_Step("a", journal, pending), _Step("b", journal)],
                           "request_headers", make_exchange())
        pending.errback(Reject(429, "slow down"))
        self.assertEqual(self.failureResultOf(result, Reject).value.status, 429)
        self.assertEqual(journal, ["a"])

    def test_until_answered_now(self) -> None:
        """For request hooks, one setting ``exchange.response`` ends the round."""
        journal: list[str] = []
        steps = [_Step("a", journal, answer=True), _Step("b", journal)]
        self.assertIsNone(call_each(steps, "request_headers", make_exchange(),
                                    until_answered=True))
        self.assertEqual(journal, ["a"])

    def test_until_answered_later(self) -> None:
        """An answer set by a hook that answered later ends the round as well."""
        journal: list[str] = []
        pending: Deferred[None] = Deferred()
        exchange = make_exchange()
        steps = [_Step("a", journal, pending, answer=True), _Step("b", journal)]
        result = call_each(steps, "request_headers", exchange, until_answered=True)
        pending.callback(None)
        self.successResultOf(result)
        self.assertEqual(journal, ["a"])

    def test_answer_does_not_stop_other_hooks(self) -> None:
        """Without ``until_answered`` (response hooks), an answer set earlier stops nothing."""
        journal: list[str] = []
        steps = [_Step("a", journal, answer=True), _Step("b", journal)]
        call_each(steps, "request_headers", make_exchange())
        self.assertEqual(journal, ["a", "b"])


class PassThroughTests(SynchronousTestCase):
    """``pass_through``: a line, event, chunk or body handed through the observers."""

    def test_none_keeps(self) -> None:
        """Hooks returning None leave the value as it was."""
        seen: list[bytes] = []

        def look(exchange: Any, value: bytes) -> None:
            seen.append(value)

        self.assertEqual(pass_through([look, look], make_exchange(), b"line"), b"line")
        self.assertEqual(seen, [b"line", b"line"])

    def test_replacement_seen_by_the_next(self) -> None:
        """A hook's replacement is what the next hook sees and what is relayed."""
        seen: list[bytes] = []

        def upper(exchange: Any, value: bytes) -> bytes:
            return value.upper()

        def look(exchange: Any, value: bytes) -> None:
            seen.append(value)

        self.assertEqual(pass_through([upper, look], make_exchange(), b"abc"), b"ABC")
        self.assertEqual(seen, [b"ABC"])

    def test_empty_drops(self) -> None:
        """Empty bytes drop the value: later hooks do not see it."""
        seen: list[bytes] = []

        def look(exchange: Any, value: bytes) -> None:
            seen.append(value)

        self.assertEqual(pass_through([lambda e, v: b"", look], make_exchange(), b"x"), b"")
        self.assertEqual(seen, [])

    def test_later(self) -> None:
        """A hook answering later gives a Deferred of the final value; the rest run after."""
        pending: Deferred[bytes] = Deferred()
        seen: list[bytes] = []

        def look(exchange: Any, value: bytes) -> bytes:
            seen.append(value)
            return value + b"!"

        result = pass_through([lambda e, v: pending, look], make_exchange(), b"x")
        self.assertIsInstance(result, Deferred)
        self.assertEqual(seen, [])
        pending.callback(b"y")
        self.assertEqual(self.successResultOf(result), b"y!")
        self.assertEqual(seen, [b"y"])

    def test_later_none_keeps(self) -> None:
        """A Deferred firing None keeps the value it was given."""
        pending: Deferred[None] = Deferred()
        result = pass_through([lambda e, v: pending], make_exchange(), b"x")
        pending.callback(None)
        self.assertEqual(self.successResultOf(result), b"x")

    def test_later_empty_drops(self) -> None:
        """A Deferred firing empty bytes drops the value before the later hooks."""
        pending: Deferred[bytes] = Deferred()
        seen: list[bytes] = []
        result = pass_through([lambda e, v: pending, lambda e, v: seen.append(v)],
                              make_exchange(), b"x")
        pending.callback(b"")
        self.assertEqual(self.successResultOf(result), b"")
        self.assertEqual(seen, [])

    def test_finished_coroutine_is_now(self) -> None:
        """A coroutine hook that did not wait gives its value at once."""

        async def upper(exchange: Any, value: bytes) -> bytes:
            return value.upper()

        self.assertEqual(pass_through([upper], make_exchange(), b"abc"), b"ABC")

    def test_wrong_type_named(self) -> None:
        """A hook returning a str (not bytes) is a TypeError naming the hook."""

        def text(exchange: Any, value: bytes) -> str:
            return "oops"

        error = self.assertRaises(TypeError, pass_through, [text], make_exchange(), b"x")
        self.assertIn("text", str(error))
        self.assertIn("returned str", str(error))


class PassOnTests(SynchronousTestCase):
    """``pass_on``: going on from a hook whose answer the caller already has."""

    @staticmethod
    def _journal(journal: list[tuple[str, bytes]], name: str, result: Any = None) -> Any:
        def hook(exchange: Any, value: bytes) -> Any:
            journal.append((name, value))
            return result
        hook.__qualname__ = name
        return hook

    def test_replacement_then_the_hooks_after(self) -> None:
        """The answer replaces the value; only the hooks after the one that gave it run,
        on the replacement."""
        journal: list[tuple[str, bytes]] = []
        hooks = [self._journal(journal, name) for name in ("a", "b", "c")]
        self.assertEqual(pass_on(hooks, 1, make_exchange(), b"x", b"Y"), b"Y")
        self.assertEqual(journal, [("c", b"Y")])

    def test_later_hooks_may_replace_again(self) -> None:
        """A hook after the one that answered may replace the value again."""
        journal: list[tuple[str, bytes]] = []
        hooks = [self._journal(journal, "a"), self._journal(journal, "b", b"Z"),
                 self._journal(journal, "c")]
        self.assertEqual(pass_on(hooks, 0, make_exchange(), b"x", b"Y"), b"Z")
        self.assertEqual(journal, [("b", b"Y"), ("c", b"Z")])

    def test_empty_drops(self) -> None:
        """Empty bytes drop the value: the hooks after it are not called."""
        journal: list[tuple[str, bytes]] = []
        hooks = [self._journal(journal, "a"), self._journal(journal, "b")]
        self.assertEqual(pass_on(hooks, 0, make_exchange(), b"x", b""), b"")
        self.assertEqual(journal, [])

    def test_later(self) -> None:
        """An awaitable answer gives a Deferred; the hooks after run once it fires."""
        journal: list[tuple[str, bytes]] = []
        pending: Deferred[None] = Deferred()
        hooks = [self._journal(journal, "a"), self._journal(journal, "b")]
        result = pass_on(hooks, 0, make_exchange(), b"x", pending)
        self.assertEqual(journal, [])
        pending.callback(None)
        self.assertEqual(self.successResultOf(result), b"x")
        self.assertEqual(journal, [("b", b"x")])

    def test_wrong_type_names_the_hook(self) -> None:
        """An answer of the wrong type is a TypeError naming the hook that gave it."""
        hooks = [self._journal([], "first"), self._journal([], "second")]
        error = self.assertRaises(TypeError, pass_on, hooks, 1, make_exchange(), b"x", "oops")
        self.assertIn("second returned str", str(error))
