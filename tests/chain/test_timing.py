"""The ``Server-Timing`` header: the gateway's time and the runner's, on every head of a
route that asks for it (held heads of whole JSON answers too), never on one that does not."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange, Reject
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.chain.timing import ServerTiming, server_timing_value
from runnergw.testing import Answer, CannedTerminal, RecordingClient, make_exchange
from tests.helpers.observers import BodyObserver

__all__ = ["ChainTimingTests", "HeaderValueTests"]


def _timed(sent: float | None = None, head: float | None = None) -> Exchange:
    exchange = make_exchange()
    exchange.upstream_sent_at, exchange.upstream_head_at = sent, head
    return exchange


class HeaderValueTests(SynchronousTestCase):
    """What the header says, from the exchange's clock readings."""

    def test_gateway_and_runner(self) -> None:
        """With a runner head, the runner's part is from the request written to its head,
        and the gateway's the rest, in milliseconds with three decimals."""
        self.assertEqual(server_timing_value(_timed(0.0125, 0.5125), 0.52),
                         "gw;dur=20.000, upstream;dur=500.000")

    def test_gateway_alone_without_a_runner_head(self) -> None:
        """An answer the gateway makes itself (nothing sent upstream, or no head came back)
        names the gateway alone, for the whole time."""
        for sent in (None, 0.1):
            with self.subTest(sent=sent):
                self.assertEqual(server_timing_value(_timed(sent), 0.0003), "gw;dur=0.300")

    def test_never_negative(self) -> None:
        """A clock set back meanwhile gives zero, never a negative duration."""
        self.assertEqual(server_timing_value(_timed(2.0, 1.0), 0.5),
                         "gw;dur=1500.000, upstream;dur=0.000")


class _Refuse:
    name = "refuse"

    def request_headers(self, exchange: Exchange) -> None:
        raise Reject(403, "no")


class _SlowHead:
    """A ``response_headers`` hook that answers later."""

    name = "slow-head"

    def __init__(self) -> None:
        self.pending: Deferred[None] = Deferred()

    def response_headers(self, exchange: Exchange) -> Deferred[None]:
        return self.pending


class _Upstream(CannedTerminal):
    """A canned runner that notes when it was asked and answered, as the Ollama one does."""

    def __init__(self, answer: Answer, clock: Clock, wait: float) -> None:
        super().__init__(answer)
        self.clock = clock
        self.wait = wait

    async def handle(self, exchange: Exchange, client: Any) -> None:
        exchange.upstream_sent_at = self.clock.seconds()
        self.clock.advance(self.wait)
        exchange.upstream_head_at = self.clock.seconds()
        await super().handle(exchange, client)


class ChainTimingTests(SynchronousTestCase):
    """Through the chain: which heads get the header, and timed when they go out."""

    def setUp(self) -> None:
        self.clock = Clock()

    def serve(self, filters: list[Any], terminal: Any, timed: bool = True,
              client: RecordingClient | None = None) -> tuple[RecordingClient, Deferred[None]]:
        route = Route("test", ("r",), tuple(filters), terminal,
                      server_timing=ServerTiming(self.clock) if timed else None)
        runner = ChainRunner(Router([route], Route("", (), (), None)))
        client = client or RecordingClient()
        self.exchange = make_exchange(path="/r/api/tags")
        done = runner.serve(self.exchange, client)
        return client, done

    def test_runner_answer(self) -> None:
        """A runner's answer says what the runner took and what the gateway added."""
        self.clock.advance(0.004)
        client, done = self.serve([], _Upstream(Answer.json({}), self.clock, 0.25))
        self.successResultOf(done)
        self.assertEqual(client.headers.get_all("server-timing"),
                         ["gw;dur=4.000, upstream;dur=250.000"])

    def test_refusal(self) -> None:
        """A filter's refusal names the gateway alone."""
        self.clock.advance(0.0015)
        client, done = self.serve([_Refuse()], CannedTerminal(Answer()))
        self.successResultOf(done)
        self.assertEqual((client.status, client.headers.get_all("server-timing")),
                         (403, ["gw;dur=1.500"]))

    def test_no_route(self) -> None:
        """A path no route serves is answered by the fallback, which has no header."""
        route = Route("test", ("r",), (), CannedTerminal(Answer()),
                      server_timing=ServerTiming(self.clock))
        client = RecordingClient()
        runner = ChainRunner(Router([route], Route("", (), (), None)))
        self.successResultOf(runner.serve(make_exchange(path="/elsewhere"), client))
        self.assertEqual((client.status, client.headers.get_all("server-timing")), (404, []))

    def test_runner_header_kept(self) -> None:
        """A runner's own ``Server-Timing`` stays, ours comes after it (the same list)."""
        answer = Answer(headers=(("Content-Type", "application/json"),
                                 ("Server-Timing", "load;dur=12")))
        client, done = self.serve([], _Upstream(answer, self.clock, 0.001))
        self.successResultOf(done)
        self.assertEqual(client.headers.get_all("server-timing"),
                         ["load;dur=12", "gw;dur=0.000, upstream;dur=1.000"])

    def test_off(self) -> None:
        """A route without it (a command route, or turned off) sends no header, and the
        head is the runner's as it was."""
        client, done = self.serve([], _Upstream(Answer.json({}), self.clock, 0.1), timed=False)
        self.successResultOf(done)
        self.assertEqual([name for name, _ in client.headers], ["Content-Type"])

    def test_hook_that_answers_later(self) -> None:
        """Time a response hook takes before the head goes out is the gateway's."""
        hook = _SlowHead()
        client, done = self.serve([hook], _Upstream(Answer.json({}), self.clock, 0.1))
        self.clock.advance(0.03)
        self.assertFalse(client.head_sent)
        hook.pending.callback(None)
        self.successResultOf(done)
        self.assertEqual(client.headers.get_all("server-timing"),
                         ["gw;dur=30.000, upstream;dur=100.000"])

    def test_held_whole_json_answer(self) -> None:
        """A whole JSON answer held for its observer gets the header once, timed when its
        head finally goes out."""
        pending: Deferred[bytes] = Deferred()
        observer = BodyObserver(lambda body: pending)
        client, done = self.serve([observer], _Upstream(Answer.json({"a": 1}), self.clock,
                                                        0.1))
        self.clock.advance(0.02)
        self.assertFalse(client.head_sent)
        pending.callback(b'{"a": 2}')
        self.successResultOf(done)
        self.assertEqual((client.body, client.headers.get_all("server-timing")),
                         (b'{"a": 2}', ["gw;dur=20.000, upstream;dur=100.000"]))

    def test_held_answer_refused(self) -> None:
        """An observer refusing a held answer: the refusal carries the header, the runner's
        part included (its head came)."""
        def refuse(body: bytes) -> None:
            raise Reject(451, "withheld")
        client, done = self.serve([BodyObserver(refuse)],
                                  _Upstream(Answer.json({}), self.clock, 0.1))
        self.successResultOf(done)
        self.assertEqual((client.status, client.headers.get_all("server-timing")),
                         (451, ["gw;dur=0.000, upstream;dur=100.000"]))

    def test_client_gone_before_the_head(self) -> None:
        """A client gone before the head gets nothing: no header is made for it."""
        hook = _SlowHead()
        client, done = self.serve([hook], _Upstream(Answer.json({}), self.clock, 0.1))
        client.leave()
        hook.pending.callback(None)
        self.successResultOf(done)
        self.assertEqual((client.head_sent,
                          self.exchange.response_headers.get_all("server-timing")), (False, []))


