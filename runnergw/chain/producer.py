"""The terminal's producer as the client side sees it: paused while the client is slow, and
also while a filter's hook is still answering (what comes meanwhile must wait)."""

from __future__ import annotations

from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

__all__ = ["GatedProducer"]


@implementer(IPushProducer)
class GatedProducer:
    """The terminal's producer, paused while the client is slow *or* a hook is pending."""

    def __init__(self, producer: IPushProducer) -> None:
        self.producer = producer
        self._reasons: set[str] = set()

    def _set(self, reason: str, paused: bool) -> None:
        before = bool(self._reasons)
        if paused:
            self._reasons.add(reason)
        else:
            self._reasons.discard(reason)
        after = bool(self._reasons)
        if after and not before:
            self.producer.pauseProducing()
        elif before and not after:
            self.producer.resumeProducing()

    def pauseProducing(self) -> None:
        self._set("client", True)

    def resumeProducing(self) -> None:
        self._set("client", False)

    def stopProducing(self) -> None:
        self.producer.stopProducing()

    def hold(self, held: bool) -> None:
        """Pause (or release) the producer while a hook's answer is awaited."""
        self._set("hook", held)
