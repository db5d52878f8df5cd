"""Observed answers: NDJSON line by line, SSE event by event, JSON whole within a bound,
anything else chunk by chunk, in the filters' response order; answers nobody observes are
relayed untouched."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import EndStream, Exchange, Reject
from runnergw.testing import Answer, RecordingClient, make_exchange, run_filters
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

__all__ = ["ChunkTests", "EndStreamTests", "EventTests", "KeptWriteTests", "LineTests",
           "ObserverOrderTests", "RefusedAnswerTests", "UnobservedTests", "WholeBodyTests",
           "WriteFallbackTests"]


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


class KeptWriteTests(ChainTestCase):
    """A write of whole lines or events that every hook keeps goes out as it came."""

    def test_lines_relayed_in_the_runners_write(self) -> None:
        """Whole lines that every observer keeps reach the client in the runner's own write,
        not copied, each line shown once to each observer."""
        chunk = b'{"n": 1}\n{"n": 2}\n{"n": 3}\n'
        outer, inner = LineObserver(name="outer"), LineObserver(name="inner")
        run = self.serve([outer, inner], streamed(NDJSON, [chunk]))
        self.assertEqual(len(run.client.writes), 1)
        self.assertIs(run.client.writes[0], chunk)
        self.assertEqual(inner.seen, [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}'])
        self.assertEqual(outer.seen, inner.seen)

    def test_blank_lines_in_the_write_kept(self) -> None:
        """Blank lines and CRLF line ends inside such a write stay as they were."""
        chunk = b'\n{"n": 1}\r\n \n{"n": 2}\n\n'
        observer = LineObserver()
        run = self.serve([observer], streamed(NDJSON, [chunk]))
        self.assertIs(run.client.writes[0], chunk)
        self.assertEqual(observer.seen, [b'{"n": 1}\r', b'{"n": 2}'])

    def test_events_relayed_in_the_runners_write(self) -> None:
        """Whole SSE events with each kind of blank line, kept, go out in the runner's write."""
        chunk = b"data: one\r\n\r\n: ping\n\ndata: two\r\r"
        observer = LineObserver()
        run = self.serve([observer], streamed(SSE, [chunk]))
        self.assertIs(run.client.writes[0], chunk)
        self.assertEqual(observer.seen, [b"data: one", b": ping", b"data: two"])

    def test_write_longer_than_the_limit_of_short_lines(self) -> None:
        """A write longer than the observer's limit is fine when each of its lines is
        within it."""
        chunk = b'{"n": 1}\n' * 8
        observer = LineObserver(max_size=10)
        run = self.serve([observer], streamed(NDJSON, [chunk]))
        self.assertEqual((run.body, run.client.aborted), (chunk, None))
        self.assertEqual(len(observer.seen), 8)

    def test_long_line_among_short_ones(self) -> None:
        """One line over the limit in a write of short ones still ends the answer, before
        any line of that write is shown or sent."""
        observer = LineObserver(max_size=10)
        chunk = b'{"n": 1}\n{"n": 123456}\n{"n": 3}\n'
        run = self.serve([observer], streamed(NDJSON, [b"{}\n", chunk]))
        self.assertEqual(run.body, b"{}\n")
        self.assertEqual(run.client.aborted, "a line longer than 10 bytes")
        self.assertEqual(observer.seen, [b"{}"])


class WriteFallbackTests(ChainTestCase):
    """Writes that cannot go out as they came: cut mid-line, a line changed, a hook that
    answers later, the answer ended or the client gone mid-write."""

    def test_write_ending_mid_line(self) -> None:
        """A write ending mid-line sends its whole lines now and the rest with the next
        write; once nothing is carried over, writes go out as they came again."""
        chunks = [b'{"n": 1}\n{"n": 2}\n{"n"', b': 3}\n{"n": 4}\n', b'{"n": 5}\n']
        observer = LineObserver()
        run = self.serve([observer], streamed(NDJSON, chunks))
        self.assertEqual(run.client.writes,
                         [b'{"n": 1}\n{"n": 2}\n', b'{"n": 3}\n{"n": 4}\n', b'{"n": 5}\n'])
        self.assertIs(run.client.writes[2], chunks[2])
        self.assertEqual(observer.seen, [b'{"n": %d}' % n for n in range(1, 6)])

    def test_write_ending_mid_event(self) -> None:
        """An SSE write ending inside an event's blank line keeps that event for the next."""
        chunks = [b"data: one\n\ndata: two\r\n\r", b"\ndata: three\n\n"]
        observer = LineObserver()
        run = self.serve([observer], streamed(SSE, chunks))
        self.assertEqual(run.client.writes,
                         [b"data: one\n\n", b"data: two\r\n\r\ndata: three\n\n"])
        self.assertEqual(observer.seen, [b"data: one", b"data: two", b"data: three"])

    def test_third_line_rewritten(self) -> None:
        """A hook rewriting the 3rd line of a write changes that line only; the lines
        around it go as they came, each shown once."""
        observer = LineObserver(lambda line: b'{"n": "three"}' if b"3" in line else None)
        chunk = b"".join(b'{"n": %d}\n' % n for n in range(1, 6))
        run = self.serve([observer], streamed(NDJSON, [chunk]))
        self.assertEqual(run.body, chunk.replace(b'{"n": 3}', b'{"n": "three"}'))
        self.assertEqual(observer.seen, [b'{"n": %d}' % n for n in range(1, 6)])

    def test_rewrite_by_the_second_observer(self) -> None:
        """When the observer seeing a line second rewrites it, the first one is not shown
        that line again."""
        outer = LineObserver(lambda line: line.upper() if b"c" in line else None,
                             name="outer")
        inner = LineObserver(name="inner")
        run = self.serve([outer, inner], streamed(NDJSON, [b"a\nb\nc\nd\n"]))
        self.assertEqual(run.body, b"a\nb\nC\nd\n")
        self.assertEqual(inner.seen, [b"a", b"b", b"c", b"d"])
        self.assertEqual(outer.seen, [b"a", b"b", b"c", b"d"])

    def test_rewrite_by_the_second_of_two_observers_sharing_a_hook(self) -> None:
        """Two observers whose hook is one shared function: the second's rewrite is taken
        as the second's, and the hook is called once per observer."""
        calls: list[bytes] = []

        def every_second_call(exchange: Exchange, line: bytes) -> bytes | None:
            calls.append(line)
            return line + b"!" if len(calls) % 2 == 0 else None

        class Shared:
            name = "shared"
            response_line = staticmethod(every_second_call)

            def request_headers(self, exchange: Exchange) -> None:
                exchange.observe_response(self)

        run = self.serve([Shared(), Shared()], streamed(NDJSON, [b"a\n"]))
        self.assertEqual((run.body, calls), (b"a!\n", [b"a", b"a"]))

    def test_rewritten_line_seen_by_the_next_observer(self) -> None:
        """A line rewritten by the first observer reaches the next one rewritten."""
        outer = LineObserver(name="outer")
        inner = LineObserver(lambda line: b"B" if line == b"b" else None, name="inner")
        run = self.serve([outer, inner], streamed(NDJSON, [b"a\nb\nc\n"]))
        self.assertEqual((run.body, outer.seen), (b"a\nB\nc\n", [b"a", b"B", b"c"]))

    def test_event_rewritten_keeps_each_blank_line(self) -> None:
        """An event rewritten in the middle of a write keeps its own blank line, and the
        events around it theirs."""
        observer = LineObserver(lambda event: b"data: B" if event == b"data: b" else None)
        run = self.serve([observer],
                         streamed(SSE, [b"data: a\r\n\r\ndata: b\n\ndata: c\r\r"]))
        self.assertEqual(run.body, b"data: a\r\n\r\ndata: B\n\ndata: c\r\r")

    def test_line_dropped_mid_write(self) -> None:
        """A line dropped in the middle of a write goes with its newline; the rest stays."""
        observer = LineObserver(lambda line: b"" if line == b"b" else None)
        run = self.serve([observer], streamed(NDJSON, [b"a\nb\nc\n"]))
        self.assertEqual(run.body, b"a\nc\n")

    def test_finished_coroutine_keeping_lines(self) -> None:
        """An async hook that answers at once, keeping every line, changes nothing."""

        async def keep(line: bytes) -> None:
            return None

        chunk = b"a\nb\nc\n"
        run = self.serve([LineObserver(keep)], streamed(NDJSON, [chunk]))
        self.assertEqual((run.body, run.client.finished), (chunk, True))

    def test_later_hook_on_one_line_of_a_write(self) -> None:
        """A hook answering later on the 2nd line of a write: the 1st goes at once, the
        lines after it (and the writes after them) wait, then all go in order."""
        pending: Deferred[None] = Deferred()
        observer = LineObserver(lambda line: pending if line == b"b" else None)
        exchange = make_exchange()
        done = run_filters([observer], exchange,
                           streamed(NDJSON, [b"a\nb\nc\nd\n", b"e\n"]))
        assert exchange.route is not None
        self.assertNoResult(done)
        self.assertEqual(observer.seen, [b"a", b"b"])
        self.assertTrue(exchange.route.terminal.paused)
        pending.callback(None)
        run = self.successResultOf(done)
        self.assertEqual(run.body, b"a\nb\nc\nd\ne\n")
        self.assertEqual(observer.seen, [b"a", b"b", b"c", b"d", b"e"])
        self.assertTrue(run.client.finished)

    def test_later_hook_of_the_second_observer(self) -> None:
        """A later answer from the observer seeing a line second replaces that line, and the
        first observer sees it once."""
        pending: Deferred[bytes] = Deferred()
        outer = LineObserver(lambda line: pending if line == b"b" else None, name="outer")
        inner = LineObserver(name="inner")
        done = run_filters([outer, inner], None, streamed(NDJSON, [b"a\nb\nc\n"]))
        pending.callback(b"B")
        run = self.successResultOf(done)
        self.assertEqual(run.body, b"a\nB\nc\n")
        self.assertEqual(inner.seen, [b"a", b"b", b"c"])

    def test_end_stream_on_the_first_line_of_a_write(self) -> None:
        """EndStream on the first line of a write sends none of that write's lines."""

        def end(line: bytes) -> None:
            if line == b"b":
                raise EndStream(b"stop")

        run = self.serve([LineObserver(end)], streamed(NDJSON, [b"a\n", b"b\nc\n"]))
        self.assertEqual(run.client.writes, [b"a\n", b"stop\n"])
        self.assertTrue(run.client.finished)

    def test_end_stream_after_a_rewrite_in_the_same_write(self) -> None:
        """EndStream after a line rewritten earlier in the same write sends the rewritten
        line, then the final one."""

        def hook(line: bytes) -> Any:
            if line == b"d":
                raise EndStream(b"stop")
            return b"B" if line == b"b" else None

        run = self.serve([LineObserver(hook)], streamed(NDJSON, [b"a\nb\nc\nd\ne\n"]))
        self.assertEqual(run.body, b"a\nB\nc\nstop\n")

    def test_end_stream_on_an_event_mid_write(self) -> None:
        """EndStream on the 2nd event of a write sends the 1st with its own blank line."""

        def end(event: bytes) -> None:
            if event == b"data: b":
                raise EndStream(b"data: [DONE]")

        run = self.serve([LineObserver(end)],
                         streamed(SSE, [b"data: a\r\n\r\ndata: b\r\n\r\ndata: c\n\n"]))
        self.assertEqual(run.body, b"data: a\r\n\r\ndata: [DONE]\n\n")

    def test_client_leaving_mid_write(self) -> None:
        """A client that leaves while a line of a write is shown: the lines after it are
        never shown, nothing of the write is sent."""
        client = RecordingClient()

        def leave(line: bytes) -> None:
            if line == b"b":
                client.leave()

        observer = LineObserver(leave)
        run = self.successResultOf(run_filters(
            [observer], None, streamed(NDJSON, [b"x\n", b"a\nb\nc\n"]), client=client))
        self.assertEqual(observer.seen, [b"x", b"a", b"b"])
        self.assertEqual(run.client.writes, [b"x\n"])
