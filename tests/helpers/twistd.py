"""A real ``twistd`` process as the tests run it: its output kept, the URL of its listening
event, its end."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol

__all__ = ["TWISTD", "TwistdProcess"]

TWISTD = "from twisted.scripts.twistd import run; run()"
"""``python -c TWISTD …`` runs twistd with the test's interpreter and ``sys.path``."""


class TwistdProcess(ProcessProtocol):
    """Collects output; ``listening`` fires with the URL from the JSON log's listening event,
    ``metrics_listening`` (before it) with the metrics listener's, ``ready`` once the gateway
    said it is ready."""

    def __init__(self) -> None:
        self.listening: Deferred[str] = Deferred()
        self.metrics_listening: Deferred[str] = Deferred()
        self.ready: Deferred[None] = Deferred()
        """Fires when the gateway says it is ready (its usage ledger open, if any)."""
        self.ended: Deferred[int] = Deferred()
        self.output = b""
        self._pending = b""

    def outReceived(self, data: bytes) -> None:
        self.output += data
        self._pending += data
        while b"\n" in self._pending and not self.ready.called:
            line, self._pending = self._pending.split(b"\n", 1)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                self.listening.callback(event["url"])
            elif event.get("event") == "metrics_listening":
                self.metrics_listening.callback(event["url"])
            elif event.get("event") == "ready":
                self.ready.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if reason.check(ProcessTerminated, ProcessDone) else -1
        if not self.listening.called:
            self.listening.errback(RuntimeError(f"twistd ended ({code}): {self.output!r}"))
        self.ended.callback(code)
