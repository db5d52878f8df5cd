"""A worker's log as its supervisor relays it: each event published with the worker's
index, other output kept as error events, nothing unbounded."""

from __future__ import annotations

from typing import Any

from twisted.internet.error import ProcessDone
from twisted.logger import LogLevel, eventAsJSON, formatEvent
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from runnergw.workers.process import MAX_LINE, WorkerNotices, WorkerProcess

__all__ = ["WorkerNoticesTests", "WorkerProcessTests"]


class WorkerProcessTests(SynchronousTestCase):
    """``WorkerProcess``."""

    def setUp(self) -> None:
        self.published: list[dict[str, Any]] = []
        self.ended: list[Failure] = []
        self.process = WorkerProcess(3, self.ended.append, self.published.append)

    def test_event_carries_worker(self) -> None:
        """A JSON event is published as the worker logged it, with ``worker`` and a
        ``worker-N`` system for text logs."""
        line = eventAsJSON({"log_format": "listening on {url}", "url": "http://x",
                            "log_level": LogLevel.info, "log_time": 1.0,
                            "event": "listening"})
        self.process.errReceived(line.encode() + b"\n")
        [event] = self.published
        self.assertEqual((event["worker"], event["log_system"], event["event"]),
                         (3, "worker-3", "listening"))
        self.assertEqual(formatEvent(event), "listening on http://x")
        self.assertEqual(event["log_level"], LogLevel.info)

    def test_split_lines_joined(self) -> None:
        """An event arriving in two reads is published once, whole."""
        line = eventAsJSON({"log_format": "x", "log_level": LogLevel.warn,
                            "log_time": 1.0}).encode()
        self.process.errReceived(line[:10])
        self.assertEqual(self.published, [])
        self.process.errReceived(line[10:] + b"\n")
        self.assertEqual(len(self.published), 1)

    def test_plain_output_is_an_error(self) -> None:
        """What the worker printed (a traceback) is published as an error event."""
        self.process.errReceived(b"Traceback (most recent call last):\n")
        [event] = self.published
        self.assertEqual((event["log_level"], formatEvent(event), event["worker"]),
                         (LogLevel.error, "Traceback (most recent call last):", 3))

    def test_long_line_cut(self) -> None:
        """A line longer than ``MAX_LINE`` is published cut, and its rest dropped."""
        self.process.errReceived(b"x" * (MAX_LINE + 10))
        self.process.errReceived(b"y" * 100 + b"\nnext\n")
        self.assertEqual([len(e["line"]) for e in self.published], [MAX_LINE, 4])

    def test_end_reported(self) -> None:
        """The end is reported once the process ended, after its last line."""
        self.process.errReceived(b"last words")
        self.process.processEnded(Failure(ProcessDone(0)))
        self.assertEqual([e["line"] for e in self.published], ["last words"])
        self.assertEqual(len(self.ended), 1)


class WorkerNoticesTests(SynchronousTestCase):
    """``WorkerNotices``: what a worker tells its supervisor as it would tell systemd."""

    def test_fields_handed_over(self) -> None:
        """One datagram of ``NAME=value`` lines becomes its fields, with the worker's
        index."""
        received: list[tuple[int, dict[str, str]]] = []
        notices = WorkerNotices(2, lambda index, fields: received.append((index, fields)))
        notices.datagramReceived(b"READY=1\nSTATUS=serving on http://x: a=b", None)
        self.assertEqual(received, [(2, {"READY": "1", "STATUS": "serving on http://x: a=b"})])
