"""A push producer that records what it is asked, for tests of backpressure."""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["RecordingProducer"]


@implementer(IPushProducer)
class RecordingProducer:
    """Records ``pause``, ``resume`` and ``stop`` in the order it is asked them."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pauseProducing(self) -> None:
        self.calls.append("pause")

    def resumeProducing(self) -> None:
        self.calls.append("resume")

    def stopProducing(self) -> None:
        self.calls.append("stop")
