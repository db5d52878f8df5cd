"""Cutting an observed answer into NDJSON lines and SSE events, however its bytes arrive."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.framing import EventFramer, FramingError, LineFramer, framing_of

__all__ = ["EventFramerTests", "EventTakeTests", "FramingOfTests", "LineFramerTests",
           "LineTakeTests"]


def _feed_all(framer: LineFramer | EventFramer,
              pieces: list[bytes]) -> list[tuple[bytes, bytes]]:
    """Every unit the framer gives for ``pieces``, then what it flushes at the end."""
    units = []
    for piece in pieces:
        units.extend(framer.feed(piece))
    units.extend(framer.flush())
    return units


def _bytewise(data: bytes) -> list[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


class FramingOfTests(SynchronousTestCase):
    """Which hook an answer's media type goes to."""

    def test_ndjson_types(self) -> None:
        """Ollama's application/x-ndjson and its spellings are cut into lines."""
        for media in ("application/x-ndjson", "application/ndjson", "application/jsonl",
                      "application/x-jsonlines", "Application/X-NDJSON; charset=utf-8"):
            with self.subTest(media=media):
                self.assertEqual(framing_of(media), "ndjson")

    def test_event_stream(self) -> None:
        """text/event-stream, with or without parameters, is cut into events."""
        self.assertEqual(framing_of("text/event-stream"), "sse")
        self.assertEqual(framing_of(" text/event-stream ; charset=utf-8"), "sse")

    def test_json_types(self) -> None:
        """application/json and any application/…+json are collected whole."""
        for media in ("application/json", "application/json; charset=utf-8",
                      "application/problem+json", "APPLICATION/JSON"):
            with self.subTest(media=media):
                self.assertEqual(framing_of(media), "json")

    def test_everything_else_is_bytes(self) -> None:
        """Other types, and an answer without a type, are observed chunk by chunk."""
        for media in (None, "", "text/plain", "application/octet-stream", "text/json",
                      "application/jsonx"):
            with self.subTest(media=media):
                self.assertEqual(framing_of(media), "bytes")


class LineFramerTests(SynchronousTestCase):
    """NDJSON lines, split anywhere."""

    def test_lines_in_one_read(self) -> None:
        """Each line comes out without its newline, which is kept beside it."""
        framer = LineFramer(100)
        self.assertEqual(framer.feed(b'{"a": 1}\n{"b": 2}\n'),
                         [(b'{"a": 1}', b"\n"), (b'{"b": 2}', b"\n")])
        self.assertEqual(framer.flush(), [])

    def test_split_mid_line(self) -> None:
        """A line cut across reads comes out once it ends."""
        framer = LineFramer(100)
        self.assertEqual(framer.feed(b'{"a"'), [])
        self.assertEqual(framer.feed(b': 1}\n{"b'), [(b'{"a": 1}', b"\n")])
        self.assertEqual(framer.feed(b'": 2}\n'), [(b'{"b": 2}', b"\n")])

    def test_one_byte_per_read(self) -> None:
        """An answer arriving a byte at a time gives the same lines, and the same bytes."""
        data = b'{"a": 1}\r\n\n{"b": 2}\n{"c"'
        units = _feed_all(LineFramer(100), _bytewise(data))
        self.assertEqual(units, [(b'{"a": 1}\r', b"\n"), (b"", b"\n"), (b'{"b": 2}', b"\n"),
                                 (b'{"c"', b"")])
        self.assertEqual(b"".join(unit + end for unit, end in units), data)

    def test_last_line_without_newline(self) -> None:
        """A last line the runner did not end is given at the end, with no terminator."""
        framer = LineFramer(100)
        self.assertEqual(framer.feed(b'{"a": 1}\n{"done": true}'), [(b'{"a": 1}', b"\n")])
        self.assertEqual(framer.flush(), [(b'{"done": true}', b"")])
        self.assertEqual(framer.flush(), [])

    def test_unfinished_line_over_limit(self) -> None:
        """A line still growing past the limit is refused before it is all in memory."""
        framer = LineFramer(10)
        framer.feed(b"0123456789")
        error = self.assertRaises(FramingError, framer.feed, b"0")
        self.assertEqual(str(error), "a line longer than 10 bytes")

    def test_line_at_limit(self) -> None:
        """A line exactly as long as the limit is fine."""
        self.assertEqual(LineFramer(10).feed(b"0123456789\n"), [(b"0123456789", b"\n")])

    def test_long_line_in_one_read(self) -> None:
        """A line over the limit is refused even when it arrives whole in one read."""
        framer = LineFramer(10)
        error = self.assertRaises(FramingError, framer.feed, b'{"a": 1}\n0123456789A\n')
        self.assertEqual(str(error), "a line longer than 10 bytes")


class EventFramerTests(SynchronousTestCase):
    """Server-sent events, ended by a blank line in any of SSE's three line ends."""

    def test_each_line_end(self) -> None:
        """Events ended by \\n\\n, \\r\\n\\r\\n or \\r\\r come out with their own ending."""
        framer = EventFramer(100)
        self.assertEqual(framer.feed(b"data: a\n\ndata: b\r\n\r\ndata: c\r\r"),
                         [(b"data: a", b"\n\n"), (b"data: b", b"\r\n\r\n"),
                          (b"data: c", b"\r\r")])

    def test_multi_line_event(self) -> None:
        """An event of several fields is one unit."""
        framer = EventFramer(100)
        self.assertEqual(framer.feed(b"event: token\r\ndata: {}\r\nid: 7\r\n\r\n"),
                         [(b"event: token\r\ndata: {}\r\nid: 7", b"\r\n\r\n")])

    def test_split_inside_crlf_blank_line(self) -> None:
        """An event whose \\r\\n\\r\\n is cut after any of its bytes still ends once."""
        data = b"data: one\r\n\r\ndata: two\r\n\r\n"
        for cut in range(9, 14):
            with self.subTest(cut=cut):
                framer = EventFramer(100)
                units = framer.feed(data[:cut]) + framer.feed(data[cut:]) + framer.flush()
                self.assertEqual(units, [(b"data: one", b"\r\n\r\n"),
                                         (b"data: two", b"\r\n\r\n")])

    def test_one_byte_per_read(self) -> None:
        """Byte by byte, the events are the same and the bytes add up to the answer."""
        data = b"data: one\r\n\r\n: keep-alive\n\ndata: two\r\ndata: 2b\r\n\r\ndata: end"
        units = _feed_all(EventFramer(100), _bytewise(data))
        self.assertEqual([unit for unit, _ in units],
                         [b"data: one", b": keep-alive", b"data: two\r\ndata: 2b", b"data: end"])
        self.assertEqual(b"".join(unit + end for unit, end in units), data)

    def test_last_event_without_blank_line(self) -> None:
        """A last event the runner did not end is given at the end, with no terminator."""
        framer = EventFramer(100)
        self.assertEqual(framer.feed(b"data: a\n\ndata: b\n"), [(b"data: a", b"\n\n")])
        self.assertEqual(framer.flush(), [(b"data: b\n", b"")])

    def test_trailing_line_ends_kept(self) -> None:
        """Line ends after the last blank line are given back too, so nothing is lost."""
        for tail in (b"\n", b"\r\n", b"\r"):
            with self.subTest(tail=tail):
                data = b"data: a\n\n" + tail
                units = _feed_all(EventFramer(100), [data])
                self.assertEqual(b"".join(unit + end for unit, end in units), data)

    def test_unfinished_event_over_limit(self) -> None:
        """An event still growing past the limit is refused."""
        framer = EventFramer(10)
        framer.feed(b"data: 0123")
        error = self.assertRaises(FramingError, framer.feed, b"4")
        self.assertEqual(str(error), "an event longer than 10 bytes")

    def test_event_at_limit_with_half_its_blank_line(self) -> None:
        """An event exactly at the limit is fine while the end of its blank line is awaited."""
        framer = EventFramer(10)
        self.assertEqual(framer.feed(b"data: 0123\r\n\r"), [])
        self.assertEqual(framer.feed(b"\n"), [(b"data: 0123", b"\r\n\r\n")])

    def test_long_event_in_one_read(self) -> None:
        """An event over the limit is refused even when it arrives whole in one read."""
        framer = EventFramer(10)
        error = self.assertRaises(FramingError, framer.feed, b"data: 01234\n\n")
        self.assertEqual(str(error), "an event longer than 10 bytes")


class LineTakeTests(SynchronousTestCase):
    """``LineFramer.take``: the bytes of the lines a read completes, and the lines."""

    def test_whole_lines_are_the_read_itself(self) -> None:
        """A read of whole lines, nothing carried over, is given back as it is."""
        data = b'{"a": 1}\n\n{"b": 2}\r\n'
        whole, lines, ends = LineFramer(100).take(data)
        self.assertIs(whole, data)
        self.assertEqual((lines, ends), ([b'{"a": 1}', b"", b'{"b": 2}\r'], None))

    def test_carried_line_joined(self) -> None:
        """The bytes include the line carried from the previous read, and stop after the
        last newline; the rest waits."""
        framer = LineFramer(100)
        self.assertEqual(framer.take(b'{"a"'), (b"", [], None))
        self.assertEqual(framer.take(b': 1}\n{"b": 2}\n{"c'),
                         (b'{"a": 1}\n{"b": 2}\n', [b'{"a": 1}', b'{"b": 2}'], None))
        self.assertEqual(framer.take(b'": 3}\n'), (b'{"c": 3}\n', [b'{"c": 3}'], None))
        self.assertEqual(framer.flush(), [])

    def test_read_ending_mid_line(self) -> None:
        """A first read ending mid-line gives its whole lines; the unended one is flushed."""
        framer = LineFramer(100)
        self.assertEqual(framer.take(b"a\nb"), (b"a\n", [b"a"], None))
        self.assertEqual(framer.flush(), [(b"b", b"")])

    def test_read_longer_than_the_limit(self) -> None:
        """A read longer than the limit is fine when each of its lines is within it."""
        data = b"0123456789\n" * 3
        self.assertEqual(LineFramer(10).take(data)[1], [b"0123456789"] * 3)

    def test_long_line_in_a_read_of_whole_lines(self) -> None:
        """One line over the limit in a read of whole lines is refused."""
        error = self.assertRaises(FramingError, LineFramer(10).take, b"a\n0123456789A\nb\n")
        self.assertEqual(str(error), "a line longer than 10 bytes")


class EventTakeTests(SynchronousTestCase):
    """``EventFramer.take``: the bytes of the events a read completes, the events and
    their blank lines."""

    def test_whole_events_are_the_read_itself(self) -> None:
        """A read of whole events, nothing carried over, is given back as it is."""
        data = b"data: a\r\n\r\ndata: b\n\n"
        whole, events, ends = EventFramer(100).take(data)
        self.assertIs(whole, data)
        self.assertEqual((events, ends), ([b"data: a", b"data: b"], [b"\r\n\r\n", b"\n\n"]))

    def test_carried_event_joined(self) -> None:
        """The bytes include what was carried, and stop after the last blank line."""
        framer = EventFramer(100)
        self.assertEqual(framer.take(b"data: a\r\n\r"), (b"", [], []))
        self.assertEqual(framer.take(b"\ndata: b\n"),
                         (b"data: a\r\n\r\n", [b"data: a"], [b"\r\n\r\n"]))
        self.assertEqual(framer.flush(), [(b"data: b\n", b"")])
