"""Request bodies collected for the filters that ask, within their limit, and replayed."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.body import BodyCollector, BodyTooLarge
from runnergw.chain.exchange import Exchange, Reject, Reply
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.http.headers import Headers
from runnergw.testing import (
    Answer,
    CannedTerminal,
    FilterRun,
    RecordingClient,
    make_exchange,
    run_filters,
)

__all__ = ["BodyCollectorTests", "CollectedBodyTests", "LimitTests", "StreamedBodyTests"]


class _Collect:
    """Asks for the body up to ``limit``; its ``request_body`` runs ``on_body``."""

    def __init__(self, limit: int = 1000, on_body: Any = None, name: str = "collect") -> None:
        self.name = name
        self.limit = limit
        self.on_body = on_body
        self.seen: list[bytes | None] = []

    def request_headers(self, exchange: Exchange) -> None:
        exchange.collect_body(self.limit)

    def request_body(self, exchange: Exchange) -> Any:
        self.seen.append(exchange.request_body)
        return self.on_body(exchange) if self.on_body is not None else None


class _BodyHookOnly:
    """Has a ``request_body`` hook but never asks for the body."""

    name = "lazy"

    def __init__(self) -> None:
        self.called = False

    def request_body(self, exchange: Exchange) -> None:
        self.called = True


def _post(body: bytes, **options: Any) -> Exchange:
    return make_exchange("POST", "/api/chat", body=body, **options)


class _BodyTestCase(SynchronousTestCase):

    def serve(self, filters: list[Any], exchange: Exchange, **options: Any) -> FilterRun:
        """Run to the end (the exchange must be over)."""
        return self.successResultOf(run_filters(filters, exchange, Answer(), **options))


class CollectedBodyTests(_BodyTestCase):
    """A filter that asked for the body."""

    def test_body_given_then_sent_on(self) -> None:
        """The request_body hook sees the whole body; the runner gets it with its length."""
        collect = _Collect()
        run = self.serve([collect], _post(b'{"prompt": "hi"}'))
        self.assertEqual(collect.seen, [b'{"prompt": "hi"}'])
        self.assertEqual(run.terminal.received, b'{"prompt": "hi"}')
        self.assertEqual(run.terminal.received_length, 16)
        self.assertEqual(run.status, 200)

    def test_replaced_body_sent_with_its_length(self) -> None:
        """A body the hook replaced reaches the runner with the new body's length."""

        def replace(exchange: Exchange) -> None:
            exchange.request_body = b'{"prompt": "hi", "options": {"seed": 1}}'

        run = self.serve([_Collect(on_body=replace)], _post(b'{"prompt": "hi"}'))
        self.assertEqual(run.terminal.received, b'{"prompt": "hi", "options": {"seed": 1}}')
        self.assertEqual(run.terminal.received_length, 40)

    def test_replaced_by_an_empty_body(self) -> None:
        """A body replaced by nothing is sent as an empty body of length 0."""

        def empty(exchange: Exchange) -> None:
            exchange.request_body = b""

        run = self.serve([_Collect(on_body=empty)], _post(b"something"))
        self.assertEqual((run.terminal.received, run.terminal.received_length), (b"", 0))

    def test_chunked_body_sent_with_its_length(self) -> None:
        """A chunked body, once collected, is sent on with the length it turned out to have."""
        run = self.serve([_Collect()], _post(b"abcdef", chunked=True))
        self.assertEqual((run.terminal.received, run.terminal.received_length), (b"abcdef", 6))

    def test_each_filter_sees_the_previous_replacement(self) -> None:
        """request_body hooks run in chain order, each on what the one before left."""

        def append(exchange: Exchange) -> None:
            assert exchange.request_body is not None
            exchange.request_body += b"!"

        first = _Collect(on_body=append, name="first")
        second = _Collect(on_body=append, name="second")
        run = self.serve([first, second], _post(b"x"))
        self.assertEqual((first.seen, second.seen), ([b"x"], [b"x!"]))
        self.assertEqual(run.terminal.received, b"x!!")

    def test_no_body(self) -> None:
        """A request without a body gives the hooks an empty one, without reading."""
        collect = _Collect()
        run = self.serve([collect], make_exchange("GET"))
        self.assertEqual(collect.seen, [b""])
        self.assertFalse(run.client.body_asked)

    def test_later_hook_awaited(self) -> None:
        """A request_body hook answering later holds the runner until it is done."""
        pending: Deferred[None] = Deferred()
        done = run_filters([_Collect(on_body=lambda exchange: pending)], _post(b"x"), Answer())
        self.assertNoResult(done)
        pending.callback(None)
        self.assertTrue(self.successResultOf(done).terminal.called)

    def test_answer_from_request_body(self) -> None:
        """A request_body hook setting exchange.response answers; the runner is not called."""

        def answer(exchange: Exchange) -> None:
            exchange.response = Reply(200, b'{"cached": true}')

        later = _Collect(name="later")
        run = self.serve([_Collect(on_body=answer), later], _post(b"x"))
        self.assertEqual((run.status, run.body), (200, b'{"cached": true}'))
        self.assertFalse(run.terminal.called)
        self.assertEqual(later.seen, [])

    def test_reject_from_request_body(self) -> None:
        """A request_body hook raising Reject answers with the route's error instead."""

        def refuse(exchange: Exchange) -> None:
            raise Reject(422, "prompt not allowed")

        run = self.serve([_Collect(on_body=refuse)], _post(b"x"), error_shape="detail")
        self.assertEqual((run.status, run.json()), (422, {"detail": "prompt not allowed"}))
        self.assertFalse(run.terminal.called)
        self.assertEqual(run.exchange.outcome, "refused")

    def test_client_leaves_during_collection(self) -> None:
        """A client leaving midway: no hook, no runner, nothing sent, outcome client_gone."""
        collect = _Collect()
        run = self.serve([collect], _post(b"0123456789", leaves_after=4))
        self.assertEqual(collect.seen, [])
        self.assertFalse(run.terminal.called)
        self.assertIsNone(run.status)
        self.assertEqual(run.exchange.outcome, "client_gone")


class LimitTests(_BodyTestCase):
    """Bodies larger than a filter allows."""

    def test_declared_length_over_limit(self) -> None:
        """A declared length over the limit is 413 in the route's shape before any byte is
        read."""
        collect = _Collect(limit=10)
        run = self.serve([collect], _post(b"x" * 11), error_shape="detail")
        self.assertEqual((run.status, run.json()),
                         (413, {"detail": "request body larger than 10 bytes"}))
        self.assertFalse(run.client.body_asked)
        self.assertEqual(collect.seen, [])
        self.assertFalse(run.terminal.called)
        self.assertEqual(run.exchange.outcome, "refused")

    def test_at_the_limit(self) -> None:
        """A body exactly at the limit is collected."""
        collect = _Collect(limit=10)
        self.serve([collect], _post(b"x" * 10))
        self.assertEqual(collect.seen, [b"x" * 10])

    def test_chunked_over_limit(self) -> None:
        """A chunked body found to be over the limit as it arrives is 413 too."""
        collect = _Collect(limit=10)
        run = self.serve([collect], _post(b"x" * 11, chunked=True))
        self.assertEqual((run.status, run.json()),
                         (413, {"error": "request body larger than 10 bytes"}))
        self.assertTrue(run.client.body_asked)
        self.assertEqual(collect.seen, [])
        self.assertFalse(run.terminal.called)

    def test_smallest_of_two_filters(self) -> None:
        """Two filters asking with different limits: the smaller one holds."""
        run = self.serve([_Collect(limit=100), _Collect(limit=10, name="strict")],
                         _post(b"x" * 50))
        self.assertEqual(run.json(), {"error": "request body larger than 10 bytes"})

    def test_route_limit_smaller(self) -> None:
        """The route's own limit holds when it is smaller than what the filter asked."""
        run = self.serve([_Collect(limit=100)], _post(b"x" * 50, chunked=True),
                         max_body_size=20)
        self.assertEqual((run.status, run.json()),
                         (413, {"error": "request body larger than 20 bytes"}))


class StreamedBodyTests(_BodyTestCase):
    """Requests no filter asked to see."""

    def test_streamed_untouched(self) -> None:
        """The body streams to the runner with its length; request_body hooks do not run."""
        lazy = _BodyHookOnly()
        run = self.serve([lazy], _post(b'{"prompt": "hi"}'))
        self.assertFalse(lazy.called)
        self.assertEqual(run.terminal.received, b'{"prompt": "hi"}')
        self.assertEqual(run.terminal.received_length, 16)
        self.assertIsNone(run.exchange.request_body)

    def test_chunked_stays_chunked(self) -> None:
        """A chunked body nobody collected is sent on chunked."""
        run = self.serve([], _post(b"abc", chunked=True))
        self.assertEqual((run.terminal.received, run.terminal.received_length), (b"abc", None))


class BodyCollectorTests(SynchronousTestCase):
    """``BodyCollector``: a body consumer keeping at most ``limit`` bytes."""

    def test_parts_joined(self) -> None:
        """The pieces come out as one body once it is done."""
        collector = BodyCollector(10)
        collector.body_data(b"abc")
        collector.body_data(b"def")
        self.assertNoResult(collector.result)
        collector.body_done()
        self.assertEqual(self.successResultOf(collector.result), b"abcdef")

    def test_empty(self) -> None:
        """A body that is done at once is empty."""
        collector = BodyCollector(0)
        collector.body_done()
        self.assertEqual(self.successResultOf(collector.result), b"")

    def test_over_limit_fails_at_once(self) -> None:
        """The first byte past the limit fails the result; what follows is ignored."""
        collector = BodyCollector(4)
        collector.body_data(b"abcd")
        self.assertNoResult(collector.result)
        collector.body_data(b"e")
        self.failureResultOf(collector.result, BodyTooLarge)
        collector.body_data(b"more")
        collector.body_done()

    def test_client_leaves(self) -> None:
        """A client leaving midway fails the result with the connection error."""
        collector = BodyCollector(10)
        collector.body_data(b"abc")
        collector.body_failed(ConnectionError("gone"))
        self.failureResultOf(collector.result, ConnectionError)
        collector.body_done()


class _StoringTerminal:
    """A terminal that stores the body itself and then runs the body hooks, as the command
    terminal does with its uploads."""

    stores_body = True

    def __init__(self) -> None:
        self.completed: list[bool] = []

    async def handle(self, exchange: Exchange, client: Any) -> None:
        received: Deferred[None] = Deferred()

        class _Store:
            def body_data(self, data: bytes) -> None:
                exchange.uploads["file"] = data.decode()

            def body_done(self) -> None:
                received.callback(None)

            def body_failed(self, reason: Exception) -> None:
                received.errback(reason)

        client.start_body(_Store())
        await received
        self.completed.append(await client.body_complete())
        client.send_head(200, Headers(), 0)
        client.finish()

    def stop(self) -> Deferred[None]:
        return Deferred()


class _CountingCollector(_Collect):
    """Collects the body and counts its request_body calls, with what was stored then."""

    def __init__(self) -> None:
        super().__init__(1000)
        self.calls: list[dict[str, str]] = []

    def request_body(self, exchange: Exchange) -> None:
        self.calls.append(dict(exchange.uploads))


class StoringTerminalTests(SynchronousTestCase):
    """On a route whose terminal stores the body, body hooks run once, after it is stored."""

    def test_body_hooks_run_once_after_storing(self) -> None:
        """A filter that also asked for the body sees it once, with what the terminal
        stored, not a first time before."""
        counter = _CountingCollector()
        terminal = _StoringTerminal()
        route = Route("models", (), (counter,), terminal)
        runner = ChainRunner(Router([route], Route("", (), (), None)))
        client = RecordingClient(b"payload")
        self.successResultOf(runner.serve(make_exchange("POST", "/m/", body=b"payload"),
                                          client))
        self.assertEqual(counter.calls, [{"file": "payload"}])
        self.assertEqual((terminal.completed, client.status), ([True], 200))


class _EarlyBody:
    """Sets a body before it was ever read."""

    name = "early"

    def request_headers(self, exchange: Exchange) -> None:
        exchange.request_body = b'{"model": "x"}\r\n\r\nGET /api/ps HTTP/1.1\r\n\r\n'


class BodyBeforeReadingTests(_BodyTestCase):
    """A body set before the gateway read one is refused, never sent under the old length."""

    def test_refused_as_internal_error(self) -> None:
        """The client gets a 500; the runner gets nothing."""
        run = self.serve([_EarlyBody()], _post(b"{}"))
        self.assertEqual(run.status, 500)
        self.assertFalse(run.terminal.called)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class _WaitsThenCollects:
    """A slow token check (it answers later) that then asks for the body."""

    name = "slow"

    def __init__(self, gate: Deferred[None]) -> None:
        self.gate = gate
        self.done_with: list[str] = []

    async def request_headers(self, exchange: Exchange) -> None:
        await self.gate
        exchange.collect_body(1000)

    def done(self, exchange: Exchange) -> None:
        self.done_with.append(exchange.outcome)


class LeftDuringHeaderHooksTests(SynchronousTestCase):
    """A client that leaves while the head hooks are still deciding."""

    def test_exchange_ends(self) -> None:
        """The exchange ends (done runs, client_gone) instead of waiting for a body that will
        never come."""
        gate: Deferred[None] = Deferred()
        slow = _WaitsThenCollects(gate)
        client = RecordingClient(b"{}")
        route = Route("r", (), (slow,), CannedTerminal(Answer()))
        runner = ChainRunner(Router([route], Route("", (), (), None)))
        exchange = make_exchange("POST", "/api/chat", body=b"{}")
        over = runner.serve(exchange, client)
        client.leave()
        gate.callback(None)
        self.successResultOf(over)
        self.assertEqual(slow.done_with, ["client_gone"])
