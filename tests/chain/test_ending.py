"""Ending an answer under way because the gateway stops (``end_now``): a final well-formed
error unit on a stream, a 503 before anything was sent, a dropped connection otherwise."""

from __future__ import annotations

import json

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.client import FilteredClient
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.http.headers import Headers
from runnergw.testing import Answer, CannedTerminal, RecordingClient, make_exchange
from tests.helpers.observers import LineObserver

__all__ = ["EndNowTests", "WaitingExchangeTests"]

_NDJSON = Headers([("Content-Type", "application/x-ndjson")])
_SSE = Headers([("Content-Type", "text/event-stream")])


def _client(observer: object | None = None) -> tuple[FilteredClient, RecordingClient]:
    exchange = make_exchange()
    client = RecordingClient()
    filters = (observer,) if observer is not None else ()
    if observer is not None:
        exchange.observe_response(observer)
    return FilteredClient(Route("test", (), filters, None), exchange, client), client  # type: ignore[arg-type]


class EndNowTests(SynchronousTestCase):
    """What a client sees of an answer the gateway ends while stopping."""

    def test_ndjson_stream_gets_a_final_error_line(self) -> None:
        """An Ollama stream ends with a parsable ``{"error": …}`` line and a proper end."""
        filtered, client = _client()
        filtered.send_head(200, Headers(_NDJSON), None)
        filtered.write(b'{"response":"a"}\n')
        filtered.end_now("the gateway is shutting down")
        lines = client.body.split(b"\n")
        self.assertEqual(lines[-1], b"")
        self.assertEqual(json.loads(lines[-2]), {"error": "the gateway is shutting down"})
        self.assertTrue(client.finished)
        self.assertEqual(filtered.exchange.outcome, "shutdown")

    def test_ndjson_line_cut_short_is_ended_first(self) -> None:
        """A line relayed only in part is ended, so the error is a line of its own."""
        filtered, client = _client()
        filtered.send_head(200, Headers(_NDJSON), None)
        filtered.write(b'{"response":')
        filtered.end_now("stopping")
        self.assertEqual(client.body, b'{"response":\n{"error": "stopping"}\n')

    def test_sse_stream_gets_an_openai_error_event(self) -> None:
        """An OpenAI-style stream ends with a ``data: {"error": {…}}`` event."""
        filtered, client = _client()
        filtered.send_head(200, Headers(_SSE), None)
        filtered.write(b'data: {"choices":[]}\n\n')
        filtered.end_now("stopping")
        event = client.body.split(b"\n\n")[-2]
        self.assertTrue(event.startswith(b"data: "), client.body)
        self.assertEqual(json.loads(event[len(b"data: "):])["error"]["message"], "stopping")
        self.assertTrue(client.finished)

    def test_observed_stream_gets_the_final_line_after_whole_lines(self) -> None:
        """An answer its filters observe gets the final line after the lines they passed."""
        filtered, client = _client(LineObserver(lambda line: None))
        filtered.send_head(200, Headers(_NDJSON), None)
        filtered.write(b'{"n":1}\n{"n":')
        filtered.end_now("stopping")
        self.assertEqual(client.body, b'{"n":1}\n{"error": "stopping"}\n')
        self.assertTrue(client.finished)

    def test_not_begun_answer_is_a_503_with_retry_after(self) -> None:
        """A client still waiting for its answer is told to come back later."""
        filtered, client = _client()
        filtered.end_now("stopping")
        self.assertEqual(client.status, 503)
        self.assertIsNotNone(client.header("retry-after"))
        self.assertEqual(client.json(), {"error": "stopping"})

    def test_answer_of_known_length_is_dropped(self) -> None:
        """An answer sent with its length cannot take another byte: its connection is
        dropped rather than sent a malformed end."""
        filtered, client = _client()
        filtered.send_head(200, Headers([("Content-Type", "application/json")]), 100)
        filtered.write(b'{"a":')
        filtered.end_now("stopping")
        self.assertIsNotNone(client.aborted)
        self.assertFalse(client.finished)

    def test_terminal_is_told_to_stop(self) -> None:
        """Ending the answer tells the terminal (it closes the runner's request)."""
        filtered, _ = _client()
        told: list[bool] = []
        filtered.when_gone(lambda: told.append(True))
        filtered.send_head(200, Headers(_NDJSON), None)
        filtered.end_now("stopping")
        self.assertEqual(told, [True])


class _Waits:
    """A filter whose request hook waits (for a concurrency slot, say) until told."""

    name = "waits"

    def __init__(self) -> None:
        self.slot: Deferred[None] = Deferred()

    def request_headers(self, exchange: object) -> Deferred[None]:
        return self.slot


class WaitingExchangeTests(SynchronousTestCase):
    """An exchange that has not reached its terminal when the gateway stops."""

    def test_exchange_waiting_in_a_filter_gets_a_503(self) -> None:
        """The runner's exchanges under way are ended too: one waiting in a filter gets a
        503 with Retry-After, and its terminal is never called."""
        waits = _Waits()
        terminal = CannedTerminal(Answer.ndjson({"n": 1}))
        runner = ChainRunner(Router([Route("test", (), (waits,), terminal)],  # type: ignore[arg-type]
                                    Route("", (), (), None)))
        client = RecordingClient()
        done = runner.serve(make_exchange("GET", "/api/tags"), client)
        self.assertEqual(len(runner.under_way), 1)
        runner.under_way.end_all()
        self.successResultOf(done)
        self.assertEqual((client.status, client.header("retry-after")), (503, "10"))
        self.assertFalse(terminal.called)
        self.assertEqual(runner.inflight.count, 0)
