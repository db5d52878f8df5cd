"""Observed answers: NDJSON line by line, SSE event by event, JSON whole within a bound,
anything else chunk by chunk, in the filters' response order; answers nobody observes are
relayed untouched."""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import EndStream, Exchange, Reject
from runnergw.testing import Answer, make_exchange, run_filters
from tests.helpers.observers import (
    JSON,
    NDJSON,
    SSE,
    TEXT,
    BodyObserver,
    ChainTestCase,
    ChunkObserver,
    LineObserver,
    bytewise,
    streamed,
)

__all__ = ["ChunkTests", "EndStreamTests", "EventTests", "LineTests", "ObserverOrderTests",
           "RefusedAnswerTests", "UnobservedTests", "WholeBodyTests"]


class UnobservedTests(ChainTestCase):
    """Answers nobody asked to observe."""

    def test_streamed_answer_untouched(self) -> None:
        """A streamed answer reaches the client in the runner's own writes, unchanged."""
        chunks = [b'{"a"', b': 1}\n{"b": 2}\n', b"\n", b'{"c": 3}']
        run = self.serve([], streamed(NDJSON, chunks))
        self.assertEqual(run.client.writes, chunks)
        self.assertIsNone(run.client.length)
        self.assertTrue(run.client.finished)
        self.assertEqual(run.exchange.response_framing, "")

    def test_answer_with_length_untouched(self) -> None:
        """A JSON answer keeps its length and bytes."""
        body = b'{"models": []}'
        run = self.serve([], Answer(200, JSON, [body]))
        self.assertEqual((run.status, run.client.length, run.body), (200, len(body), body))

    def test_observer_without_the_right_hook(self) -> None:
        """A filter observing lines leaves a whole JSON answer untouched, with its length."""
        observer = LineObserver(lambda line: b"changed")
        run = self.serve([observer], Answer.json({"a": 1}))
        self.assertEqual((run.body, run.client.length), (b'{"a": 1}', 8))
        self.assertEqual(observer.seen, [])

    def test_accept_encoding_kept(self) -> None:
        """Without observers the runner may still compress its answer."""
        exchange = make_exchange(headers=[("Host", "gw"), ("Accept-Encoding", "gzip")])
        run = self.serve([], Answer(), exchange)
        self.assertEqual(run.terminal.upstream_headers.get("accept-encoding"), "gzip")


class LineTests(ChainTestCase):
    """NDJSON answers, observed line by line."""

    def test_rewritten(self) -> None:
        """A line hook's bytes replace the line; the answer is then sent chunked."""
        observer = LineObserver(lambda line: line.replace(b"secret", b"[redacted]"))
        run = self.serve([observer], Answer.ndjson({"t": "a secret"}, {"done": True}))
        self.assertEqual(run.lines(), [{"t": "a [redacted]"}, {"done": True}])
        self.assertIsNone(run.client.length)
        self.assertEqual(run.exchange.response_framing, "ndjson")

    def test_dropped(self) -> None:
        """Empty bytes drop a line together with its newline."""
        observer = LineObserver(lambda line: b"" if b"drop" in line else None)
        run = self.serve([observer], Answer.ndjson({"n": 1}, {"drop": True}, {"n": 2}))
        self.assertEqual(run.body, b'{"n": 1}\n{"n": 2}\n')

    def test_split_anywhere_relayed_byte_for_byte(self) -> None:
        """Lines cut mid-line, a byte per write, with CRLF and blank lines, come out as sent."""
        data = b'{"a": 1}\r\n\n{"b": 2}\n{"c": 3}'
        for chunks in ([data[:3], data[3:12], data[12:]], bytewise(data), [data]):
            with self.subTest(writes=len(chunks)):
                observer = LineObserver()
                run = self.serve([observer], streamed(NDJSON, chunks))
                self.assertEqual(run.body, data)
                self.assertEqual(observer.seen, [b'{"a": 1}\r', b'{"b": 2}', b'{"c": 3}'])
                self.assertTrue(run.client.finished)

    def test_last_line_without_newline(self) -> None:
        """The runner's last line, unended, is shown to the hooks and relayed unended."""
        observer = LineObserver(lambda line: line.upper())
        run = self.serve([observer], streamed(NDJSON, [b'{"a": 1}\n{"do', b'ne": true}']))
        self.assertEqual(run.body, b'{"A": 1}\n{"DONE": TRUE}')

    def test_blank_lines_not_shown(self) -> None:
        """Blank lines are relayed without bothering the hooks."""
        observer = LineObserver()
        run = self.serve([observer], streamed(NDJSON, [b"\n  \n{}\n"]))
        self.assertEqual((run.body, observer.seen), (b"\n  \n{}\n", [b"{}"]))

    def test_line_over_limit(self) -> None:
        """A line longer than the observer's limit ends the answer, whole or split."""
        line = b'{"t": "' + b"x" * 40 + b'"}\n'
        for chunks in ([line], [line[:20], line[20:]]):
            with self.subTest(writes=len(chunks)):
                observer = LineObserver(max_size=32)
                run = self.serve([observer], streamed(NDJSON, [b"{}\n", *chunks, b"{}\n"]))
                self.assertEqual(run.status, 200)
                self.assertEqual(run.body, b"{}\n")
                self.assertEqual(run.client.aborted, "a line longer than 32 bytes")
                self.assertEqual(run.exchange.outcome, "upstream_error")
                self.assertTrue(run.terminal.stopped)

    def test_accept_encoding_removed(self) -> None:
        """An observed answer must be readable: the runner is not offered compression."""
        exchange = make_exchange(headers=[("Host", "gw"), ("Accept-Encoding", "gzip")])
        run = self.serve([LineObserver()], Answer.ndjson({}), exchange)
        self.assertIsNone(run.terminal.upstream_headers.get("accept-encoding"))


class EventTests(ChainTestCase):
    """Server-sent events, observed event by event."""

    stream = b"data: one\r\n\r\n: ping\n\ndata: two\r\ndata: 2b\r\n\r\ndata: end"

    def test_split_mid_blank_line_relayed_byte_for_byte(self) -> None:
        """Events cut inside their \\r\\n\\r\\n, or a byte per write, come out as sent."""
        for chunks in ([self.stream[:11], self.stream[11:12], self.stream[12:]],
                       bytewise(self.stream)):
            with self.subTest(writes=len(chunks)):
                observer = LineObserver()
                run = self.serve([observer], streamed(SSE, chunks))
                self.assertEqual(run.body, self.stream)
                self.assertEqual(observer.seen, [b"data: one", b": ping",
                                                 b"data: two\r\ndata: 2b", b"data: end"])

    def test_rewritten_keeps_its_blank_line(self) -> None:
        """A rewritten event is followed by the runner's own blank line."""
        observer = LineObserver(lambda event: event.replace(b"one", b"1"))
        run = self.serve([observer], streamed(SSE, [self.stream[:12], self.stream[12:]]))
        self.assertTrue(run.body.startswith(b"data: 1\r\n\r\n: ping\n\n"))

    def test_dropped(self) -> None:
        """Empty bytes drop an event with its blank line."""
        observer = LineObserver(lambda event: b"" if event.startswith(b":") else None)
        run = self.serve([observer], streamed(SSE, [self.stream]))
        self.assertEqual(run.body, b"data: one\r\n\r\ndata: two\r\ndata: 2b\r\n\r\ndata: end")


class WholeBodyTests(ChainTestCase):
    """JSON answers, observed whole."""

    def test_rewritten_with_new_length(self) -> None:
        """A body hook's bytes are the answer, sent with their own length."""
        observer = BodyObserver(lambda body: b'{"short": 1}')
        run = self.serve([observer], Answer.json({"a long answer": "x" * 100}))
        self.assertEqual((run.status, run.body, run.client.length),
                         (200, b'{"short": 1}', 12))
        self.assertEqual(observer.seen, [json.dumps({"a long answer": "x" * 100}).encode()])

    def test_collected_across_writes(self) -> None:
        """A JSON answer written in pieces, without a length, is shown once, whole."""
        observer = BodyObserver()
        run = self.serve([observer], streamed(JSON, [b'{"a":', b" 1", b"}"]))
        self.assertEqual(observer.seen, [b'{"a": 1}'])
        self.assertEqual((run.body, run.client.length), (b'{"a": 1}', 8))

    def test_head_waits_for_a_later_hook(self) -> None:
        """Nothing reaches the client before a body hook that answers later is done."""
        pending: Deferred[bytes] = Deferred()
        done = run_filters([BodyObserver(lambda body: pending)], None, Answer.json({"a": 1}))
        self.assertNoResult(done)
        pending.callback(b"{}")
        run = self.successResultOf(done)
        self.assertEqual((run.status, run.body, run.client.length), (200, b"{}", 2))

    def test_declared_length_over_limit(self) -> None:
        """An answer declared larger than the bound is a 502 in the route's shape, and the
        runner is told to stop."""
        observer = BodyObserver(max_size=10)
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
        observer = BodyObserver(max_size=10)
        run = self.serve([observer], streamed(JSON, [b'{"a": ', b'"0123456789"}']))
        self.assertEqual((run.status, run.json()),
                         (502, {"error": "the runner's answer could not be checked"}))
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(observer.seen, [])

    def test_content_encoded(self) -> None:
        """A compressed answer cannot be checked: 502, never passed unchecked."""
        observer = BodyObserver()
        answer = Answer(200, (*JSON, ("Content-Encoding", "gzip")), [b"\x1f\x8b..."])
        run = self.serve([observer], answer)
        self.assertEqual(run.status, 502)
        self.assertNotIn(b"\x1f\x8b", run.body)
        self.assertEqual(run.exchange.reason, "the runner's answer is content-encoded")
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(observer.seen, [])

    def test_identity_encoding_observed(self) -> None:
        """Content-Encoding: identity is no compression."""
        observer = BodyObserver()
        run = self.serve([observer], Answer(200, (*JSON, ("Content-Encoding", "Identity")),
                                          [b"{}"]))
        self.assertEqual((run.status, observer.seen), (200, [b"{}"]))

    def test_end_stream_answers_its_final(self) -> None:
        """EndStream from a body hook sends its final bytes as the whole answer."""

        def end(body: bytes) -> None:
            raise EndStream(b'{"cut": true}')

        run = self.serve([BodyObserver(end)], Answer.json({"a": 1}))
        self.assertEqual((run.body, run.client.length), (b'{"cut": true}', 13))
        self.assertEqual((run.exchange.outcome, run.exchange.reason),
                         ("truncated", "ended by a filter"))


class ChunkTests(ChainTestCase):
    """Answers that are neither NDJSON, SSE nor JSON, observed chunk by chunk."""

    def test_each_chunk(self) -> None:
        """Every chunk, blank ones included, goes through the chunk hook."""
        observer = ChunkObserver(lambda chunk: chunk.upper())
        run = self.serve([observer], streamed(TEXT, [b"ab", b"  ", b"\n", b"cd"]))
        self.assertEqual(observer.seen, [b"ab", b"  ", b"\n", b"cd"])
        self.assertEqual(run.body, b"AB  \nCD")

    def test_json_to_chunk_observer(self) -> None:
        """A JSON answer goes to chunk hooks when no observer reads whole bodies."""
        observer = ChunkObserver(lambda chunk: chunk.replace(b"1", b"2"))
        run = self.serve([observer], Answer.json({"a": 1}))
        self.assertEqual((run.body, run.client.length), (b'{"a": 2}', None))


class EndStreamTests(ChainTestCase):
    """A hook ending the answer early."""

    @staticmethod
    def _end_at(marker: bytes, final: bytes = b'{"done": true}') -> Callable[[bytes], None]:
        def end(line: bytes) -> None:
            if marker in line:
                raise EndStream(final, reason="budget spent")
        return end

    def test_final_line_then_finish(self) -> None:
        """The final line is sent with its newline, the answer finishes, the runner stops."""
        run = self.serve([LineObserver(self._end_at(b"2"))],
                       Answer.ndjson({"n": 1}, {"n": 2}, {"n": 3}))
        self.assertEqual(run.body, b'{"n": 1}\n{"done": true}\n')
        self.assertTrue(run.client.finished)
        self.assertIsNone(run.client.aborted)
        self.assertTrue(run.terminal.stopped)
        self.assertEqual((run.exchange.outcome, run.exchange.reason),
                         ("truncated", "budget spent"))

    def test_lines_before_it_in_the_same_write(self) -> None:
        """Lines that came in the same write before the ending one are still sent."""
        run = self.serve([LineObserver(self._end_at(b"3"))],
                       streamed(NDJSON, [b'{"n": 1}\n{"n": 2}\n{"n": 3}\n{"n": 4}\n']))
        self.assertEqual(run.lines(), [{"n": 1}, {"n": 2}, {"done": True}])

    def test_sse_final_event(self) -> None:
        """An event stream's final event is ended by a blank line."""
        run = self.serve([LineObserver(self._end_at(b"two", b"data: [DONE]"))],
                       streamed(SSE, [b"data: one\n\ndata: two\n\ndata: three\n\n"]))
        self.assertEqual(run.body, b"data: one\n\ndata: [DONE]\n\n")

    def test_no_final(self) -> None:
        """EndStream without a final line just finishes the answer."""
        run = self.serve([LineObserver(self._end_at(b"2", b""))],
                       Answer.ndjson({"n": 1}, {"n": 2}))
        self.assertEqual(run.body, b'{"n": 1}\n')
        self.assertTrue(run.client.finished)

    def test_from_a_later_hook(self) -> None:
        """A Deferred failing with EndStream ends the answer the same way."""
        pending: Deferred[None] = Deferred()
        done = run_filters([LineObserver(lambda line: pending)], None,
                           Answer.ndjson({"n": 1}, {"n": 2}))
        pending.errback(EndStream(b'{"stop": 1}'))
        run = self.successResultOf(done)
        self.assertEqual(run.body, b'{"stop": 1}\n')
        self.assertEqual(run.exchange.outcome, "truncated")
        self.assertTrue(run.terminal.stopped)

    def test_on_the_last_unended_line(self) -> None:
        """EndStream on a last line without newline still finishes once."""
        run = self.serve([LineObserver(self._end_at(b"last"))],
                       streamed(NDJSON, [b'{"n": 1}\n{"last": 1}']))
        self.assertEqual(run.body, b'{"n": 1}\n{"done": true}\n')
        self.assertTrue(run.client.finished)


class ObserverOrderTests(ChainTestCase):
    """Several filters observing one answer."""

    def test_reverse_chain_order(self) -> None:
        """Like every response hook, the filter nearest the runner sees a line first, and
        the one before it sees what that one made of it."""
        journal: list[str] = []
        outer = LineObserver(lambda line: line + b" outer", name="outer", journal=journal)
        inner = LineObserver(lambda line: line + b" inner", name="inner", journal=journal)
        run = self.serve([outer, inner], streamed(NDJSON, [b"x\n"]))
        self.assertEqual(journal, ["inner", "outer"])
        self.assertEqual(run.body, b"x inner outer\n")
        self.assertEqual(outer.seen, [b"x inner"])

    def test_dropped_line_not_shown_further(self) -> None:
        """A line dropped near the runner is never shown to the filters before it."""
        outer = LineObserver(name="outer")
        inner = LineObserver(lambda line: b"", name="inner")
        run = self.serve([outer, inner], Answer.ndjson({"n": 1}))
        self.assertEqual((run.body, outer.seen), (b"", []))


class _RefusingObserver:
    """Refuses the answer from one of its observing hooks."""

    name = "refuser"

    def request_headers(self, exchange: Exchange) -> None:
        exchange.observe_response(self)

    def response_body(self, exchange: Exchange, body: bytes) -> None:
        raise Reject(403, "this answer is not for you", reason="answer refused")

    def response_line(self, exchange: Exchange, line: bytes) -> None:
        if b'"n": 2' in line:
            raise Reject(403, "this answer is not for you", reason="answer refused")


class RefusedAnswerTests(SynchronousTestCase):
    """An observing filter refuses the answer it sees."""

    def test_whole_answer_refused_in_the_route_shape(self) -> None:
        """A whole JSON answer refused by its observer reaches the client as the refusal."""
        run = self.successResultOf(run_filters([_RefusingObserver()], make_exchange(),
                                               Answer.json({"secret": 1})))
        self.assertEqual((run.status, run.json()), (403, {"error": "this answer is not for you"}))
        self.assertEqual((run.exchange.outcome, run.exchange.reason), ("denied", "answer refused"))
        self.assertNotIn(b"secret", run.body)

    def test_streamed_answer_refused_midway_is_cut(self) -> None:
        """A line refused after the head went out cuts the connection; the line never goes."""
        run = self.successResultOf(run_filters(
            [_RefusingObserver()], make_exchange("POST", "/api/chat"),
            Answer.ndjson({"n": 1}, {"n": 2}, {"n": 3})))
        self.assertEqual(run.client.aborted, "answer refused")
        self.assertNotIn(b'"n": 2', run.body)
        self.assertTrue(run.terminal.stopped)
        self.assertEqual(run.exchange.outcome, "denied")
