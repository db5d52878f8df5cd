"""A worker process as its supervisor sees it: its log events (JSON lines on its standard
error) published in the supervisor's log with its index, its end, and its notify messages
(``READY=1``…, sent to a datagram socket of its own as a lone gateway sends them to
systemd)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from twisted.internet.protocol import DatagramProtocol, ProcessProtocol
from twisted.logger import LogLevel, eventFromJSON, globalLogPublisher
from twisted.python.failure import Failure

import runnergw

__all__ = ["MAX_LINE", "WorkerNotices", "WorkerProcess", "worker_environment"]

MAX_LINE = 65536
"""Longest line kept from a worker's standard error; the rest of a longer one is dropped."""

_INHERITED_NOT = ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "LISTEN_PID",
                  "LISTEN_FDS", "LISTEN_FDNAMES")
"""Variables meant for the supervisor alone: a worker speaks to it, not to systemd."""


def worker_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """A worker's environment: ``environ`` without what is meant for the supervisor alone,
    and with the ``runnergw`` the supervisor runs first on ``PYTHONPATH``."""
    environment = {name: value for name, value in environ.items()
                   if name not in _INHERITED_NOT}
    source = os.path.dirname(os.path.dirname(os.path.abspath(runnergw.__file__)))
    path = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = source + (os.pathsep + path if path else "")
    return environment


class WorkerProcess(ProcessProtocol):
    """Relays worker ``index``'s log; ``ended(reason)`` once it exited and its pipes closed."""

    def __init__(self, index: int, ended: Callable[[Failure], None],
                 publish: Callable[[dict[str, Any]], None] = globalLogPublisher) -> None:
        self.index = index
        self._ended = ended
        self._publish = publish
        self._pending = b""
        self._dropping = False

    def errReceived(self, data: bytes) -> None:
        lines = (self._pending + data).split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            if self._dropping:
                self._dropping = False
                continue
            self._relay(line)
        if len(self._pending) > MAX_LINE:
            self._relay(self._pending[:MAX_LINE])
            self._pending = b""
            self._dropping = True

    def processEnded(self, reason: Failure) -> None:
        if self._pending and not self._dropping:
            self._relay(self._pending)
        self._pending = b""
        self._ended(reason)

    def _relay(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").strip()
        if not text:
            return
        event: Any = None
        if text.startswith("{"):
            try:
                event = eventFromJSON(text)
            except ValueError:
                event = None
        if not isinstance(event, dict) or "log_level" not in event:
            # Not an event: what the worker printed (a start-up refusal, a traceback).
            event = {"log_format": "{line}", "line": text, "log_level": LogLevel.error,
                     "log_namespace": "runnergw.worker", "log_time": time.time(),
                     "event": "worker_output"}
        event["worker"] = self.index
        event["log_system"] = f"worker-{self.index}"
        self._publish(event)


class WorkerNotices(DatagramProtocol):
    """Worker ``index``'s notify messages, each handed over as its fields
    (``notice(index, {"READY": "1", "STATUS": …})``)."""

    noisy = False

    def __init__(self, index: int, notice: Callable[[int, dict[str, str]], None]) -> None:
        self.index = index
        self._notice = notice

    def datagramReceived(self, datagram: bytes, address: Any) -> None:
        fields = {}
        for line in datagram.decode("utf-8", "replace").splitlines():
            name, _, value = line.partition("=")
            fields[name] = value
        self._notice(self.index, fields)
