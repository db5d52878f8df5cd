"""Filters that observe an answer and record what they were shown, and a test case that runs
them to a canned runner: for the tests of the chain's client and of observed answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Exchange
from runnergw.testing import Answer, FilterRun, run_filters

__all__ = ["JSON", "NDJSON", "SSE", "TEXT", "BodyObserver", "ChainTestCase", "ChunkObserver",
           "LineObserver", "Observer", "bytewise", "streamed"]

NDJSON = (("Content-Type", "application/x-ndjson"),)
SSE = (("Content-Type", "text/event-stream; charset=utf-8"),)
JSON = (("Content-Type", "application/json; charset=utf-8"),)
TEXT = (("Content-Type", "text/plain"),)


def bytewise(data: bytes) -> list[bytes]:
    """``data`` a byte per write."""
    return [data[i:i + 1] for i in range(len(data))]


class Observer:
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


class LineObserver(Observer):
    """Observes NDJSON lines and SSE events."""

    def response_line(self, exchange: Exchange, line: bytes) -> Any:
        return self._see(line)


class BodyObserver(Observer):
    """Observes whole JSON bodies."""

    def response_body(self, exchange: Exchange, body: bytes) -> Any:
        return self._see(body)


class ChunkObserver(Observer):
    """Observes the chunks of other answers."""

    def response_chunk(self, exchange: Exchange, chunk: bytes) -> Any:
        return self._see(chunk)


def streamed(headers: tuple[tuple[str, str], ...], chunks: list[bytes]) -> Answer:
    """An answer without a length, each chunk one write."""
    return Answer(200, headers, chunks, streamed=True)


class ChainTestCase(SynchronousTestCase):
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
        """The formats of the warnings logged so far."""
        return [event["log_format"] for event in self.events
                if event.get("log_level") is not None and event["log_level"].name == "warn"]
