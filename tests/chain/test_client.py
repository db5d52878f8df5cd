"""The client a terminal sees: response hooks on every head, observed answers line by line,
event by event, whole or chunk by chunk, and answers nobody observes relayed untouched."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import EndStream, Exchange, Reject, Reply
from runnergw.chain.route import Route, Router
from runnergw.chain.runner import ChainRunner
from runnergw.http.headers import Headers
from runnergw.testing import Answer, FilterRun, RecordingClient, make_exchange, run_filters

__all__ = ["EndStreamTests", "EventTests", "FailingHookTests", "HeadHookTests",
           "LineTests", "ObserverOrderTests", "PendingHookTests", "UnobservedTests",
           "WholeBodyTests", "ChunkTests", "HeldHeadFailureTests"]

_NDJSON = (("Content-Type", "application/x-ndjson"),)
_SSE = (("Content-Type", "text/event-stream; charset=utf-8"),)
_JSON = (("Content-Type", "application/json; charset=utf-8"),)
_TEXT = (("Content-Type", "text/plain"),)


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


class _Observer:
    """Asks to observe the answer; its hook records each value and returns ``answer(value)``."""

    name = "observer"

    def __init__(self, answer: Callable[[bytes], Any] | None = None, *,
                 max_size: int | None = None, name: str = "observer",
                 journal: list[str] | None = None) -> None:
        self.name = name
        self.answer = answer or (lambda value: None)
        self.max_size = max_size
        self.journal = journal if journal is not None else []
        self.seen: list[bytes] = []

    def request_headers(self, exchange: Exchange) -> None:
        exchange.observe_response(self, self.max_size)

    def _see(self, value: bytes) -> Any:
        self.seen.append(value)
        self.journal.append(self.name)
        return self.answer(value)


class _LineObserver(_Observer):
    def response_line(self, exchange: Exchange, line: bytes) -> Any:
        return self._see(line)


class _BodyObserver(_Observer):
    def response_body(self, exchange: Exchange, body: bytes) -> Any:
        return self._see(body)


class _ChunkObserver(_Observer):
    def response_chunk(self, exchange: Exchange, chunk: bytes) -> Any:
        return self._see(chunk)


def _streamed(headers: tuple[tuple[str, str], ...], chunks: list[bytes]) -> Answer:
    return Answer(200, headers, chunks, streamed=True)


class _ClientTestCase(SynchronousTestCase):
    """Runs filters to a canned runner and captures what the gateway logs."""

    def setUp(self) -> None:
        self.events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)

    def serve(self, filters: list[Any], answer: Answer, exchange: Exchange | None = None,
            **options: Any) -> FilterRun:
        """Run to the end (the exchange must be over)."""
        return self.successResultOf(run_filters(filters, exchange, answer, **options))

    def warnings(self) -> list[str]:
        return [event["log_format"] for event in self.events
                if event.get("log_level") is not None and event["log_level"].name == "warn"]


class UnobservedTests(_ClientTestCase):
    """Answers nobody asked to observe."""

    def test_streamed_answer_untouched(self) -> None:
        """A streamed answer reaches the client in the runner's own writes, unchanged."""
        chunks = [b'{"a"', b': 1}\n{"b": 2}\n', b"\n", b'{"c": 3}']
        run = self.serve([], _streamed(_NDJSON, chunks))
        self.assertEqual(run.client.writes, chunks)
        self.assertIsNone(run.client.length)
        self.assertTrue(run.client.finished)
        self.assertEqual(run.exchange.response_framing, "")

    def test_answer_with_length_untouched(self) -> None:
        """A JSON answer keeps its length and bytes."""
        body = b'{"models": []}'
        run = self.serve([], Answer(200, _JSON, [body]))
        self.assertEqual((run.status, run.client.length, run.body), (200, len(body), body))

    def test_observer_without_the_right_hook(self) -> None:
        """A filter observing lines leaves a whole JSON answer untouched, with its length."""
        observer = _LineObserver(lambda line: b"changed")
        run = self.serve([observer], Answer.json({"a": 1}))
        self.assertEqual((run.body, run.client.length), (b'{"a": 1}', 8))
        self.assertEqual(observer.seen, [])

    def test_accept_encoding_kept(self) -> None:
        """Without observers the runner may still compress its answer."""
        exchange = make_exchange(headers=[("Host", "gw"), ("Accept-Encoding", "gzip")])
        run = self.serve([], Answer(), exchange)
        self.assertEqual(run.terminal.upstream_headers.get("accept-encoding"), "gzip")


class LineTests(_ClientTestCase):
    """NDJSON answers, observed line by line."""

    def test_rewritten(self) -> None:
        """A line hook's bytes replace the line; the answer is then sent chunked."""
        observer = _LineObserver(lambda line: line.replace(b"secret", b"[redacted]"))
        run = self.serve([observer], Answer.ndjson({"t": "a secret"}, {"done": True}))
        self.assertEqual(run.lines(), [{"t": "a [redacted]"}, {"done": True}])
        self.assertIsNone(run.client.length)
        self.assertEqual(run.exchange.response_framing, "ndjson")

    def test_dropped(self) -> None:
        """Empty bytes drop a line together with its newline."""
        observer = _LineObserver(lambda line: b"" if b"drop" in line else None)
        run = self.serve([observer], Answer.ndjson({"n": 1}, {"drop": True}, {"n": 2}))
        self.assertEqual(run.body, b'{"n": 1}\n{"n": 2}\n')

    def test_split_anywhere_relayed_byte_for_byte(self) -> None:
        """Lines cut mid-line, a byte per write, with CRLF and blank lines, come out as sent."""
        data = b'{"a": 1}\r\n\n{"b": 2}\n{"c": 3}'
        for chunks in ([data[:3], data[3:12], data[12:]], _bytewise(data), [data]):
            with self.subTest(writes=len(chunks)):
                observer = _LineObserver()
                run = self.serve([observer], _streamed(_NDJSON, chunks))
                self.assertEqual(run.body, data)
                self.assertEqual(observer.seen, [b'{"a": 1}\r', b'{"b": 2}', b'{"c": 3}'])
                self.assertTrue(run.client.finished)

    def test_last_line_without_newline(self) -> None:
        """The runner's last line, unended, is shown to the hooks and relayed unended."""
        observer = _LineObserver(lambda line: line.upper())
        run = self.serve([observer], _streamed(_NDJSON, [b'{"a": 1}\n{"do', b'ne": true}']))
        self.assertEqual(run.body, b'{"A": 1}\n{"DONE": TRUE}')

    def test_blank_lines_not_shown(self) -> None:
        """Blank lines are relayed without bothering the hooks."""
        observer = _LineObserver()
        run = self.serve([observer], _streamed(_NDJSON, [b"\n  \n{}\n"]))
        self.assertEqual((run.body, observer.seen), (b"\n  \n{}\n", [b"{}"]))

    def test_line_over_limit(self) -> None:
        """A line longer than the observer's limit ends the answer, whole or split."""
        line = b'{"t": "' + b"x" * 40 + b'"}\n'
        for chunks in ([line], [line[:20], line[20:]]):
            with self.subTest(writes=len(chunks)):
                observer = _LineObserver(max_size=32)
                run = self.serve([observer], _streamed(_NDJSON, [b"{}\n", *chunks, b"{}\n"]))
                self.assertEqual(run.status, 200)
                self.assertEqual(run.body, b"{}\n")
                self.assertEqual(run.client.aborted, "a line longer than 32 bytes")
                self.assertEqual(run.exchange.outcome, "upstream_error")
                self.assertTrue(run.terminal.stopped)

    def test_accept_encoding_removed(self) -> None:
        """An observed answer must be readable: the runner is not offered compression."""
        exchange = make_exchange(headers=[("Host", "gw"), ("Accept-Encoding", "gzip")])
        run = self.serve([_LineObserver()], Answer.ndjson({}), exchange)
        self.assertIsNone(run.terminal.upstream_headers.get("accept-encoding"))


class EventTests(_ClientTestCase):
    """Server-sent events, observed event by event."""

    stream = b"data: one\r\n\r\n: ping\n\ndata: two\r\ndata: 2b\r\n\r\ndata: end"

    def test_split_mid_blank_line_relayed_byte_for_byte(self) -> None:
        """Events cut inside their \\r\\n\\r\\n, or a byte per write, come out as sent."""
        for chunks in ([self.stream[:11], self.stream[11:12], self.stream[12:]],
                       _bytewise(self.stream)):
            with self.subTest(writes=len(chunks)):
                observer = _LineObserver()
                run = self.serve([observer], _streamed(_SSE, chunks))
                self.assertEqual(run.body, self.stream)
                self.assertEqual(observer.seen, [b"data: one", b": ping",
                                                 b"data: two\r\ndata: 2b", b"data: end"])

    def test_rewritten_keeps_its_blank_line(self) -> None:
        """A rewritten event is followed by the runner's own blank line."""
        observer = _LineObserver(lambda event: event.replace(b"one", b"1"))
        run = self.serve([observer], _streamed(_SSE, [self.stream[:12], self.stream[12:]]))
        self.assertTrue(run.body.startswith(b"data: 1\r\n\r\n: ping\n\n"))

    def test_dropped(self) -> None:
        """Empty bytes drop an event with its blank line."""
        observer = _LineObserver(lambda event: b"" if event.startswith(b":") else None)
        run = self.serve([observer], _streamed(_SSE, [self.stream]))
        self.assertEqual(run.body, b"data: one\r\n\r\ndata: two\r\ndata: 2b\r\n\r\ndata: end")


class WholeBodyTests(_ClientTestCase):
    """JSON answers, observed whole."""

    def test_rewritten_with_new_length(self) -> None:
        """A body hook's bytes are the answer, sent with their own length."""
        observer = _BodyObserver(lambda body: b'{"short": 1}')
        run = self.serve([observer], Answer.json({"a long answer": "x" * 100}))
        self.assertEqual((run.status, run.body, run.client.length),
                         (200, b'{"short": 1}', 12))
        self.assertEqual(observer.seen, [json.dumps({"a long answer": "x" * 100}).encode()])

    def test_collected_across_writes(self) -> None:
        """A JSON answer written in pieces, without a length, is shown once, whole."""
        observer = _BodyObserver()
        run = self.serve([observer], _streamed(_JSON, [b'{"a":', b" 1", b"}"]))
        self.assertEqual(observer.seen, [b'{"a": 1}'])
        self.assertEqual((run.body, run.client.length), (b'{"a": 1}', 8))

    def test_head_waits_for_a_later_hook(self) -> None:
        """Nothing reaches the client before a body hook that answers later is done."""
        pending: Deferred[bytes] = Deferred()
        done = run_filters([_BodyObserver(lambda body: pending)], None, Answer.json({"a": 1}))
        self.assertNoResult(done)
        pending.callback(b"{}")
        run = self.successResultOf(done)
        self.assertEqual((run.status, run.body, run.client.length), (200, b"{}", 2))

    def test_declared_length_over_limit(self) -> None:
        """An answer declared larger than the bound is a 502 in the route's shape, and the
        runner is told to stop."""
        observer = _BodyObserver(max_size=10)
        run = self.serve([observer], Answer.json({"a": "0123456789"}), error_shape="detail")
        self.assertEqual(run.status, 502)
        self.assertEqual(run.json(), {"detail": "the runner's answer could not be checked"})
        self.assertEqual(run.client.length, len(run.body))
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(observer.seen, [])
        self.assertEqual((run.exchange.outcome, run.exchange.reason),
                         ("upstream_error", "the runner's answer is larger than 10 bytes"))
        self.assertEqual(len(self.warnings()), 1)

    def test_streamed_over_limit(self) -> None:
        """An answer without a length that grows past the bound is a 502 too."""
        observer = _BodyObserver(max_size=10)
        run = self.serve([observer], _streamed(_JSON, [b'{"a": ', b'"0123456789"}']))
        self.assertEqual((run.status, run.json()),
                         (502, {"error": "the runner's answer could not be checked"}))
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(observer.seen, [])

    def test_content_encoded(self) -> None:
        """A compressed answer cannot be checked: 502, never passed unchecked."""
        observer = _BodyObserver()
        answer = Answer(200, (*_JSON, ("Content-Encoding", "gzip")), [b"\x1f\x8b..."])
        run = self.serve([observer], answer)
        self.assertEqual(run.status, 502)
        self.assertNotIn(b"\x1f\x8b", run.body)
        self.assertEqual(run.exchange.reason, "the runner's answer is content-encoded")
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(observer.seen, [])

    def test_identity_encoding_observed(self) -> None:
        """Content-Encoding: identity is no compression."""
        observer = _BodyObserver()
        run = self.serve([observer], Answer(200, (*_JSON, ("Content-Encoding", "Identity")),
                                          [b"{}"]))
        self.assertEqual((run.status, observer.seen), (200, [b"{}"]))

    def test_end_stream_answers_its_final(self) -> None:
        """EndStream from a body hook sends its final bytes as the whole answer."""

        def end(body: bytes) -> None:
            raise EndStream(b'{"cut": true}')

        run = self.serve([_BodyObserver(end)], Answer.json({"a": 1}))
        self.assertEqual((run.body, run.client.length), (b'{"cut": true}', 13))


class ChunkTests(_ClientTestCase):
    """Answers that are neither NDJSON, SSE nor JSON, observed chunk by chunk."""

    def test_each_chunk(self) -> None:
        """Every chunk, blank ones included, goes through the chunk hook."""
        observer = _ChunkObserver(lambda chunk: chunk.upper())
        run = self.serve([observer], _streamed(_TEXT, [b"ab", b"  ", b"\n", b"cd"]))
        self.assertEqual(observer.seen, [b"ab", b"  ", b"\n", b"cd"])
        self.assertEqual(run.body, b"AB  \nCD")

    def test_json_to_chunk_observer(self) -> None:
        """A JSON answer goes to chunk hooks when no observer reads whole bodies."""
        observer = _ChunkObserver(lambda chunk: chunk.replace(b"1", b"2"))
        run = self.serve([observer], Answer.json({"a": 1}))
        self.assertEqual((run.body, run.client.length), (b'{"a": 2}', None))


class EndStreamTests(_ClientTestCase):
    """A hook ending the answer early."""

    @staticmethod
    def _end_at(marker: bytes, final: bytes = b'{"done": true}') -> Callable[[bytes], None]:
        def end(line: bytes) -> None:
            if marker in line:
                raise EndStream(final, reason="budget spent")
        return end

    def test_final_line_then_finish(self) -> None:
        """The final line is sent with its newline, the answer finishes, the runner stops."""
        run = self.serve([_LineObserver(self._end_at(b"2"))],
                       Answer.ndjson({"n": 1}, {"n": 2}, {"n": 3}))
        self.assertEqual(run.body, b'{"n": 1}\n{"done": true}\n')
        self.assertTrue(run.client.finished)
        self.assertIsNone(run.client.aborted)
        self.assertTrue(run.terminal.stopped)
        self.assertEqual((run.exchange.outcome, run.exchange.reason),
                         ("truncated", "budget spent"))

    def test_lines_before_it_in_the_same_write(self) -> None:
        """Lines that came in the same write before the ending one are still sent."""
        run = self.serve([_LineObserver(self._end_at(b"3"))],
                       _streamed(_NDJSON, [b'{"n": 1}\n{"n": 2}\n{"n": 3}\n{"n": 4}\n']))
        self.assertEqual(run.lines(), [{"n": 1}, {"n": 2}, {"done": True}])

    def test_sse_final_event(self) -> None:
        """An event stream's final event is ended by a blank line."""
        run = self.serve([_LineObserver(self._end_at(b"two", b"data: [DONE]"))],
                       _streamed(_SSE, [b"data: one\n\ndata: two\n\ndata: three\n\n"]))
        self.assertEqual(run.body, b"data: one\n\ndata: [DONE]\n\n")

    def test_no_final(self) -> None:
        """EndStream without a final line just finishes the answer."""
        run = self.serve([_LineObserver(self._end_at(b"2", b""))],
                       Answer.ndjson({"n": 1}, {"n": 2}))
        self.assertEqual(run.body, b'{"n": 1}\n')
        self.assertTrue(run.client.finished)

    def test_from_a_later_hook(self) -> None:
        """A Deferred failing with EndStream ends the answer the same way."""
        pending: Deferred[None] = Deferred()
        done = run_filters([_LineObserver(lambda line: pending)], None,
                           Answer.ndjson({"n": 1}, {"n": 2}))
        pending.errback(EndStream(b'{"stop": 1}'))
        run = self.successResultOf(done)
        self.assertEqual(run.body, b'{"stop": 1}\n')
        self.assertEqual(run.exchange.outcome, "truncated")
        self.assertTrue(run.terminal.stopped)

    def test_on_the_last_unended_line(self) -> None:
        """EndStream on a last line without newline still finishes once."""
        run = self.serve([_LineObserver(self._end_at(b"last"))],
                       _streamed(_NDJSON, [b'{"n": 1}\n{"last": 1}']))
        self.assertEqual(run.body, b'{"n": 1}\n{"done": true}\n')
        self.assertTrue(run.client.finished)


class PendingHookTests(_ClientTestCase):
    """Hooks that answer later: the answer waits for them, in order."""

    def test_later_lines_wait_and_the_runner_is_paused(self) -> None:
        """Lines after a pending one wait, the runner is paused meanwhile, and the answer
        finishes only after them, in order."""
        pending: Deferred[bytes] = Deferred()
        observer = _LineObserver(lambda line: pending if b"1" in line else line.upper())
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
        done = run_filters([_LineObserver(lambda line: pending)], exchange,
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

        observer = _LineObserver(later)
        done = run_filters([observer], None,
                           _streamed(_NDJSON, [b'{"n": 1}\n{"n": 2}\n{"n"', b": 3}"]))
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

        done = run_filters([SlowHead(), _LineObserver()], None, Answer.ndjson({"n": 1}))
        self.assertNoResult(done)
        pending.callback(None)
        run = self.successResultOf(done)
        self.assertEqual((run.status, run.body), (200, b'{"n": 1}\n'))

    def test_client_leaving_ends_the_wait(self) -> None:
        """A client that leaves while a hook is pending ends the exchange: the runner stops,
        done runs, and no line hook is called after done."""
        pending: Deferred[None] = Deferred()
        journal: list[str] = []

        class Audited(_LineObserver):
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


class FailingHookTests(_ClientTestCase):
    """Hooks that fail after the head went out: the answer cannot be completed."""

    def test_failing_line_hook(self) -> None:
        """A line hook raising drops the connection; the failure is logged."""

        def broken(line: bytes) -> None:
            if b"2" in line:
                raise ZeroDivisionError("bug")

        run = self.serve([_LineObserver(broken)], Answer.ndjson({"n": 1}, {"n": 2}, {"n": 3}))
        self.assertEqual(run.status, 200)
        self.assertEqual(run.body, b'{"n": 1}\n')
        self.assertEqual(run.client.aborted, "internal error")
        self.assertEqual(run.exchange.outcome, "error")
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(len(self.flushLoggedErrors(ZeroDivisionError)), 1)

    def test_failing_later(self) -> None:
        """A line hook whose Deferred fails drops the connection too, logged."""
        pending: Deferred[None] = Deferred()
        done = run_filters([_LineObserver(lambda line: pending)], None,
                           Answer.ndjson({"n": 1}, {"n": 2}))
        pending.errback(KeyError("bug"))
        run = self.successResultOf(done)
        self.assertEqual(run.client.aborted, "internal error")
        self.assertEqual(run.body, b"")
        self.assertEqual(len(self.flushLoggedErrors(KeyError)), 1)

    def test_hook_returning_text(self) -> None:
        """A hook returning str instead of bytes is a logged failure, not a garbled answer."""
        run = self.serve([_LineObserver(lambda line: line.decode())], Answer.ndjson({"n": 1}))
        self.assertEqual(run.client.aborted, "internal error")
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 1)


class HeadHookTests(_ClientTestCase):
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

        observer = _BodyObserver(lambda body: body.replace(b"true", b"1"))
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

        observer = _BodyObserver(lambda body: b'{"error": "go away"}')
        run = self.serve([observer, Deny()], Answer())
        self.assertEqual((run.status, run.json()), (401, {"error": "go away"}))

    def test_head_204_304_not_observed(self) -> None:
        """Answers without a body go out as they are; no observing hook is called."""
        for method, status in (("HEAD", 200), ("GET", 204), ("GET", 304)):
            with self.subTest(method=method, status=status):
                observer = _BodyObserver(lambda body: b"changed")
                answer = Answer(status, _JSON, [], length=None if status != 200 else 42)
                run = self.serve([observer], answer, make_exchange(method))
                self.assertEqual((run.status, run.body), (status, b""))
                self.assertEqual(run.client.length, None if status != 200 else 42)
                self.assertEqual(observer.seen, [])
                self.assertTrue(run.client.finished)


class ObserverOrderTests(_ClientTestCase):
    """Several filters observing one answer."""

    def test_reverse_chain_order(self) -> None:
        """Like every response hook, the filter nearest the runner sees a line first, and
        the one before it sees what that one made of it."""
        journal: list[str] = []
        outer = _LineObserver(lambda line: line + b" outer", name="outer", journal=journal)
        inner = _LineObserver(lambda line: line + b" inner", name="inner", journal=journal)
        run = self.serve([outer, inner], _streamed(_NDJSON, [b"x\n"]))
        self.assertEqual(journal, ["inner", "outer"])
        self.assertEqual(run.body, b"x inner outer\n")
        self.assertEqual(outer.seen, [b"x inner"])

    def test_dropped_line_not_shown_further(self) -> None:
        """A line dropped near the runner is never shown to the filters before it."""
        outer = _LineObserver(name="outer")
        inner = _LineObserver(lambda line: b"", name="inner")
        run = self.serve([outer, inner], Answer.ndjson({"n": 1}))
        self.assertEqual((run.body, outer.seen), (b"", []))


class _FailingAfterHead:
    """A terminal whose runner gives a JSON head, then fails before the body is whole."""

    def __init__(self, failure: Exception) -> None:
        self.failure = failure

    def handle(self, exchange: Exchange, client: Any) -> None:
        client.send_head(200, Headers(_JSON), 10)
        client.write(b'{"mod')
        raise self.failure

    def stop(self) -> Deferred[None]:
        return Deferred()


class HeldHeadFailureTests(SynchronousTestCase):
    """A head held for a whole-body observer has not reached the client: an error still can."""

    def run_failing(self, failure: Exception) -> RecordingClient:
        exchange = make_exchange("GET", "/api/tags", request_id="req-9")
        client = RecordingClient()
        route = Route("test", (), (_BodyObserver(),), _FailingAfterHead(failure))
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
