"""A client stream that records what the gateway sends, for chain tests without a socket."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from runnergw.http.headers import Headers
from runnergw.http.interfaces import IClientStream, StreamPolicy

__all__ = ["RecordingClient"]


@implementer(IClientStream)
class RecordingClient:
    """An ``IClientStream`` that records what the gateway does to its client (no body)."""

    def __init__(self) -> None:
        self.head: tuple[int, list[tuple[str, str]], int | None] | None = None
        self.body = b""
        self.finished = False
        self.aborted: str | None = None
        self.head_sent = False
        self.gone = False
        self.record: Any = None
        self.policy = StreamPolicy()

    def start_body(self, consumer: Any) -> None:
        consumer.body_done()

    def pause_body(self) -> None:
        pass

    def resume_body(self) -> None:
        pass

    def send_head(self, status: int, headers: Headers, length: int | None) -> None:
        self.head_sent = True
        self.head = (status, list(headers), length)

    def write(self, data: bytes) -> None:
        self.body += data

    def finish(self) -> None:
        self.finished = True

    def abort(self, reason: str) -> None:
        self.aborted = reason

    def register_producer(self, producer: Any) -> None:
        pass

    def unregister_producer(self) -> None:
        pass

    def when_gone(self, callback: Callable[[], object]) -> None:
        pass

    @property
    def status(self) -> int | None:
        """The status sent, if any."""
        return None if self.head is None else self.head[0]

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        """The first response header called ``name``."""
        assert self.head is not None
        return Headers(self.head[1]).get(name)
