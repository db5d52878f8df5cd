"""The client a terminal sees: response hooks on every head, hooks that answer later holding
what follows in order (and the runner paused meanwhile), hooks that fail, a collected body
replayed from memory, and the exchange settled only once nothing waits."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.client import FilteredClient
from runnergw.chain.exchange import EndStream, Exchange, Reject, Reply
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.http.headers import Headers
from runnergw.testing import Answer, CannedTerminal, RecordingClient, make_exchange, run_filters
from tests.helpers.observers import (
    JSON,
    NDJSON,
    BodyObserver,
    ChainTestCase,
    LineObserver,
    streamed,
)

__all__ = ["BodyReplayTests", "EndingTests", "FailingHookTests", "HeadHookTests",
           "HeldHeadFailureTests", "PendingHookTests", "SettledTests"]


class PendingHookTests(ChainTestCase):
    """Hooks that answer later: the answer waits for them, in order."""

    def test_later_lines_wait_and_the_runner_is_paused(self) -> None:
        """Lines after a pending one wait, the runner is paused meanwhile, and the answer
        finishes only after them, in order."""
        pending: Deferred[bytes] = Deferred()
        observer = LineObserver(lambda line: pending if b"1" in line else line.upper())
        exchange = make_exchange()
        done = run_filters([observer], exchange, Answer.ndjson({"n": 1}, {"n": 2}, {"n": 3}))
        assert exchange.route is not None
        terminal = exchange.route.terminal
        self.assertEqual(observer.seen, [b'{"n": 1}'])
        self.assertTrue(terminal.paused)
        self.assertNoResult(done)
        pending.callback(b'{"n": "one"}')
        run = self.successResultOf(done)
        self.assertEqual(run.body, b'{"n": "one"}\n{"N": 2}\n{"N": 3}\n')
        self.assertTrue(run.client.finished)
        self.assertFalse(terminal.paused)

    def test_client_pause_and_hook_both_hold(self) -> None:
        """The runner resumes only once the client takes bytes again and no hook is pending."""
        pending: Deferred[None] = Deferred()
        exchange, client = make_exchange(), RecordingClient()
        done = run_filters([LineObserver(lambda line: pending)], exchange,
                           Answer.ndjson({"n": 1}), client=client)
        assert exchange.route is not None
        terminal = exchange.route.terminal
        client.producer.pauseProducing()
        pending.callback(None)
        self.assertTrue(terminal.paused)
        client.producer.resumeProducing()
        self.assertFalse(terminal.paused)
        client.producer.pauseProducing()
        self.assertTrue(terminal.paused)
        self.successResultOf(done)

    def test_lines_of_one_write_in_order(self) -> None:
        """Lines that came in one write are shown one at a time, each after the previous
        one's hook is done, and relayed in order."""
        pendings: list[Deferred[Any]] = []

        def later(line: bytes) -> Deferred[Any]:
            pendings.append(Deferred())
            return pendings[-1]

        observer = LineObserver(later)
        done = run_filters([observer], None,
                           streamed(NDJSON, [b'{"n": 1}\n{"n": 2}\n{"n"', b": 3}"]))
        self.assertEqual(len(pendings), 1)
        pendings[0].callback(None)
        self.assertEqual(len(pendings), 2)
        pendings[1].callback(b"")
        self.assertEqual(observer.seen, [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}'])
        self.assertNoResult(done)
        pendings[2].callback(b'{"n": "three"}')
        run = self.successResultOf(done)
        self.assertEqual(run.body, b'{"n": 1}\n{"n": "three"}')
        self.assertTrue(run.client.finished)

    def test_pending_head_hook_holds_the_body(self) -> None:
        """A response_headers hook answering later holds the head and every byte after it."""
        pending: Deferred[None] = Deferred()

        class SlowHead:
            name = "slow"

            def response_headers(self, exchange: Exchange) -> Deferred[None]:
                return pending

        done = run_filters([SlowHead(), LineObserver()], None, Answer.ndjson({"n": 1}))
        self.assertNoResult(done)
        pending.callback(None)
        run = self.successResultOf(done)
        self.assertEqual((run.status, run.body), (200, b'{"n": 1}\n'))

    def test_client_leaving_ends_the_wait(self) -> None:
        """A client that leaves while a hook is pending ends the exchange: the runner stops,
        done runs, and no line hook is called after done."""
        pending: Deferred[None] = Deferred()
        journal: list[str] = []

        class Audited(LineObserver):
            def done(self, exchange: Exchange) -> None:
                journal.append("done")

        observer = Audited(lambda line: pending, journal=journal)
        client = RecordingClient()
        done = run_filters([observer], None, Answer.ndjson({"n": 1}, {"n": 2}), client=client)
        self.assertNoResult(done)
        client.leave()
        run = self.successResultOf(done)
        self.assertTrue(run.terminal.stopped)
        pending.callback(None)
        self.assertEqual(journal, ["observer", "done"])
        self.assertEqual(run.body, b"")


class FailingHookTests(ChainTestCase):
    """Hooks that fail after the head went out: the answer cannot be completed."""

    def test_failing_line_hook(self) -> None:
        """A line hook raising drops the connection; the failure is logged."""

        def broken(line: bytes) -> None:
            if b"2" in line:
                raise ZeroDivisionError("bug")

        run = self.serve([LineObserver(broken)], Answer.ndjson({"n": 1}, {"n": 2}, {"n": 3}))
        self.assertEqual(run.status, 200)
        self.assertEqual(run.body, b'{"n": 1}\n')
        self.assertEqual(run.client.aborted, "internal error")
        self.assertEqual(run.exchange.outcome, "error")
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_failing_later(self) -> None:
        """A line hook whose Deferred fails drops the connection too, logged."""
        pending: Deferred[None] = Deferred()
        done = run_filters([LineObserver(lambda line: pending)], None,
                           Answer.ndjson({"n": 1}, {"n": 2}))
        pending.errback(KeyError("bug"))
        run = self.successResultOf(done)
        self.assertEqual(run.client.aborted, "internal error")
        self.assertEqual(run.body, b"")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_hook_returning_text(self) -> None:
        """A hook returning str instead of bytes is a logged failure, not a garbled answer."""
        run = self.serve([LineObserver(lambda line: line.decode())], Answer.ndjson({"n": 1}))
        self.assertEqual(run.client.aborted, "internal error")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class HeadHookTests(ChainTestCase):
    """``response_headers`` hooks, on every answer the client gets."""

    def test_reject_replaces_the_answer(self) -> None:
        """Reject from response_headers sends the route's error instead; the runner stops."""

        class Refuse:
            name = "refuse"

            def response_headers(self, exchange: Exchange) -> None:
                if exchange.status == 200:
                    raise Reject(451, "not here", headers=(("X-Why", "law"),))

        run = self.serve([Refuse()], Answer.ndjson({"secret": 1}), error_shape="detail")
        self.assertEqual((run.status, run.json()), (451, {"detail": "not here"}))
        self.assertEqual(run.client.headers.get("x-why"), "law")
        self.assertEqual(run.client.length, len(run.body))
        self.assertNotIn(b"secret", run.body)
        self.assertTrue(run.terminal.stopped)
        self.assertEqual((run.exchange.outcome, run.exchange.reason), ("refused", "not here"))

    def test_reject_later(self) -> None:
        """A response_headers hook failing later with Reject is refused the same way."""
        pending: Deferred[None] = Deferred()

        class Slow:
            name = "slow"

            def response_headers(self, exchange: Exchange) -> Deferred[None]:
                return pending

        done = run_filters([Slow()], None, Answer.ndjson({"secret": 1}))
        pending.errback(Reject(403, "no"))
        run = self.successResultOf(done)
        self.assertEqual((run.status, run.json()), (403, {"error": "no"}))
        self.assertEqual(run.exchange.outcome, "denied")

    def test_early_answer_goes_through_response_hooks(self) -> None:
        """A filter's own answer passes the response hooks and observers like the runner's."""

        class Cache:
            name = "cache"

            def request_headers(self, exchange: Exchange) -> None:
                exchange.response = Reply(200, b'{"cached": true}')

        class Stamp:
            name = "stamp"

            def response_headers(self, exchange: Exchange) -> None:
                exchange.response_headers.set("X-Stamp", "1")

        observer = BodyObserver(lambda body: body.replace(b"true", b"1"))
        run = self.serve([Stamp(), observer, Cache()], Answer.json({"runner": True}))
        self.assertFalse(run.terminal.called)
        self.assertEqual((run.body, run.client.length), (b'{"cached": 1}', 13))
        self.assertEqual(run.client.headers.get("x-stamp"), "1")

    def test_error_reply_goes_through_response_hooks(self) -> None:
        """A refusal passes the response hooks and observers of the filters before it."""

        class Deny:
            name = "deny"

            def request_headers(self, exchange: Exchange) -> None:
                raise Reject(401, "token missing")

        observer = BodyObserver(lambda body: b'{"error": "go away"}')
        run = self.serve([observer, Deny()], Answer())
        self.assertEqual((run.status, run.json()), (401, {"error": "go away"}))

    def test_head_204_304_not_observed(self) -> None:
        """Answers without a body go out as they are; no observing hook is called."""
        for method, status in (("HEAD", 200), ("GET", 204), ("GET", 304)):
            with self.subTest(method=method, status=status):
                observer = BodyObserver(lambda body: b"changed")
                answer = Answer(status, JSON, [], length=None if status != 200 else 42)
                run = self.serve([observer], answer, make_exchange(method))
                self.assertEqual((run.status, run.body), (status, b""))
                self.assertEqual(run.client.length, None if status != 200 else 42)
                self.assertEqual(observer.seen, [])
                self.assertTrue(run.client.finished)


class _FailingAfterHead:
    """A terminal whose runner gives a JSON head, then fails before the body is whole."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    def handle(self, exchange: Exchange, client: Any) -> None:
        client.send_head(200, Headers(JSON), 10)
        client.write(b'{"mod')
        raise self.failure

    def stop(self) -> Deferred[None]:
        return Deferred()


class HeldHeadFailureTests(SynchronousTestCase):
    """A head held for a whole-body observer has not reached the client: an error still can."""

    def run_failing(self, failure: Exception) -> RecordingClient:
        exchange = make_exchange("GET", "/api/tags", request_id="req-9")
        client = RecordingClient()
        route = Route("test", (), (BodyObserver(),), _FailingAfterHead(failure))
        runner = ChainRunner(Router([route], Route("", (), (), None)))
        self.successResultOf(runner.serve(exchange, client))
        return client

    def test_refusal_after_held_head_is_answered(self) -> None:
        """A runner refusal after a held head gives the client the refusal, not a reset."""
        client = self.run_failing(Reject(502, "runner local closed the connection"))
        self.assertEqual((client.status, json.loads(client.body)),
                         (502, {"error": "runner local closed the connection"}))
        self.assertIsNone(client.aborted)
        self.assertTrue(client.finished)

    def test_bug_after_held_head_is_a_500(self) -> None:
        """A terminal bug after a held head is a 500 naming the request, not a reset."""
        client = self.run_failing(ValueError("bug"))
        self.assertEqual((client.status, json.loads(client.body)),
                         (500, {"error": "internal error (request req-9)"}))
        self.assertEqual(len(self.flushLoggedErrors(ValueError)), 1)


class _Consumer:
    """Records what a terminal reading the body would get."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def body_data(self, data: bytes) -> None:
        self.calls.append(data)

    def body_done(self) -> None:
        self.calls.append("done")

    def body_failed(self, reason: Exception) -> None:
        self.calls.append(reason)


class BodyReplayTests(SynchronousTestCase):
    """A body the filters collected, handed to the terminal from memory."""

    def client(self, body: bytes | None) -> tuple[FilteredClient, RecordingClient]:
        exchange = make_exchange("POST", body=b"from the wire")
        exchange.request_body = body
        client = RecordingClient(b"from the wire")
        return FilteredClient(Route("test", (), (), None), exchange, client), client

    def test_collected_body_replayed(self) -> None:
        """The terminal gets the body as the filters left it; the client is not read
        again."""
        filtered, client = self.client(b"REWRITTEN")
        consumer = _Consumer()
        filtered.start_body(consumer)
        self.assertEqual(consumer.calls, [b"REWRITTEN", "done"])
        self.assertFalse(client.body_asked)

    def test_emptied_body_replayed(self) -> None:
        """A body a filter emptied is an empty body, not the one on the wire."""
        filtered, client = self.client(b"")
        consumer = _Consumer()
        filtered.start_body(consumer)
        self.assertEqual(consumer.calls, ["done"])
        self.assertFalse(client.body_asked)

    def test_uncollected_body_streamed(self) -> None:
        """Without collection the terminal reads the client's body itself."""
        filtered, client = self.client(None)
        consumer = _Consumer()
        filtered.start_body(consumer)
        self.assertEqual(consumer.calls, [b"from the wire", "done"])
        self.assertTrue(client.body_asked)

    def test_body_replaced_by_text_is_a_500(self) -> None:
        """A filter leaving text where bytes belong fails closed with a logged 500."""

        class Texting:
            name = "texting"

            def request_headers(self, exchange: Exchange) -> None:
                exchange.collect_body(100)

            def request_body(self, exchange: Exchange) -> None:
                exchange.request_body = "text"  # type: ignore[assignment]

        run = self.successResultOf(run_filters([Texting()], make_exchange("POST", body=b"x")))
        self.assertEqual(run.status, 500)
        self.assertFalse(run.terminal.called)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class SettledTests(SynchronousTestCase):
    """``settled``: the exchange is over only once nothing waits behind a hook."""

    def test_settled_at_once_when_nothing_waits(self) -> None:
        """Without a pending hook the exchange is settled."""
        filtered = FilteredClient(Route("test", (), (), None), make_exchange(),
                                  RecordingClient())
        self.assertFalse(filtered.busy)
        self.successResultOf(filtered.settled())

    def test_settled_once_the_pending_hook_is_done(self) -> None:
        """While a line hook's answer is awaited the exchange is not over, even though the
        runner is done; it is once the hook answers and the rest is relayed."""
        pending: Deferred[None] = Deferred()
        done = run_filters([LineObserver(lambda line: pending)], None,
                           Answer.ndjson({"n": 1}, {"n": 2}))
        self.assertNoResult(done)
        pending.callback(None)
        run = self.successResultOf(done)
        self.assertEqual(run.body, b'{"n": 1}\n{"n": 2}\n')
        self.assertTrue(run.client.finished)


class _EndsAtHead:
    """Ends the answer from its head hook (say, a quota already used up)."""

    name = "ends"

    def response_headers(self, exchange: Exchange) -> None:
        raise EndStream(b'{"done": true, "done_reason": "length"}', reason="quota reached")


class _LateWriter:
    """A terminal that writes again after finishing its answer."""

    async def handle(self, exchange: Exchange, client: Any) -> None:
        client.send_head(200, Headers(JSON), None)
        client.write(b'{"a": 1}')
        client.finish()
        client.write(b"late")
        client.finish()

    def stop(self) -> Deferred[None]:
        return Deferred()


class _BreaksOff:
    """A terminal whose runner breaks off an answer after its head."""

    async def handle(self, exchange: Exchange, client: Any) -> None:
        client.send_head(200, Headers(JSON), 100)
        client.write(b'{"models": [')
        client.abort("upstream failed")

    def stop(self) -> Deferred[None]:
        return Deferred()


class EndingTests(SynchronousTestCase):
    """How an answer ends when a filter or the terminal ends it unusually."""

    def serve(self, filters: tuple[Any, ...], terminal: Any) -> tuple[RecordingClient, Exchange]:
        exchange = make_exchange("GET", "/api/tags")
        client = RecordingClient()
        route = Route("test", (), filters, terminal)
        self.successResultOf(ChainRunner(Router([route], Route("", (), (), None)))
                             .serve(exchange, client))
        return client, exchange

    def test_end_stream_from_the_head_hook(self) -> None:
        """EndStream from response_headers sends the head with the final bytes as the whole
        body, stops the runner and records the answer as truncated."""
        terminal = CannedTerminal(Answer.ndjson({"n": 1}, {"n": 2}))
        client, exchange = self.serve((_EndsAtHead(),), terminal)
        self.assertEqual((client.status, client.body),
                         (200, b'{"done": true, "done_reason": "length"}'))
        self.assertEqual(client.length, len(client.body))
        self.assertTrue(terminal.stopped)
        self.assertEqual((exchange.outcome, exchange.reason), ("truncated", "quota reached"))

    def test_writes_after_finish_never_reach_observers(self) -> None:
        """Bytes a terminal writes after finishing are dropped, not shown to observers."""
        observer = BodyObserver()
        client, _ = self.serve((observer,), _LateWriter())
        self.assertEqual(observer.seen, [b'{"a": 1}'])
        self.assertEqual(client.body, b'{"a": 1}')

    def test_runner_breaking_off_a_held_answer_is_a_502(self) -> None:
        """A runner that breaks off an answer held whole for its observers gives the client a
        502 saying so, not a reset connection."""
        client, _ = self.serve((BodyObserver(),), _BreaksOff())
        self.assertEqual((client.status, json.loads(client.body)),
                         (502, {"error": "the runner's answer broke off before it was complete"}))
        self.assertIsNone(client.aborted)
