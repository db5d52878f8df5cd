"""A real ``twistd runnergw`` with ``server.workers`` under a stand-in service manager: its
JSON log events (the workers' carry their ``worker``), its notify messages, its end."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredQueue
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import TestCase

from tests.helpers.twistd import TwistdProcess, gateway_environment, spawn_twistd

__all__ = ["LoggedTwistd", "ServiceManager", "start_twistd"]

Event = dict[str, Any]


class ServiceManager(DatagramProtocol):
    """The service manager's end of ``$NOTIFY_SOCKET``: each message queued as text."""

    noisy = False

    def __init__(self) -> None:
        self.queue: DeferredQueue[str] = DeferredQueue()

    def datagramReceived(self, datagram: bytes, address: Any) -> None:
        self.queue.put(datagram.decode("utf-8"))

    async def next_starting(self, prefix: str) -> str:
        """The next message that starts with ``prefix`` (others are skipped: statuses)."""
        while True:
            message = await self.queue.get()
            if message.startswith(prefix):
                return message


class LoggedTwistd(TwistdProcess):
    """Keeps every JSON log event, and tells who waits for one; ``listening`` fires with
    the first worker's URL, ``metrics_listening`` with the supervisor's metrics URL."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[Event] = []
        self._buffer = b""
        self._waiters: list[tuple[Callable[[Event], bool], Deferred[Event]]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self.events.append(event)
                self._announce(event)
                for waiter in list(self._waiters):
                    if waiter[0](event):
                        self._waiters.remove(waiter)
                        waiter[1].callback(event)

    def _announce(self, event: Event) -> None:
        name = event.get("event")
        if name == "listening" and not self.listening.called:
            self.listening.callback(event["url"])
        elif (name == "metrics_listening" and "worker" not in event
              and not self.metrics_listening.called):
            self.metrics_listening.callback(event["url"])

    def next_event(self, name: str, worker: int | None = None) -> Deferred[Event]:
        """The next event ``name`` (of worker ``worker`` when given); fails if the process
        ends first."""
        waiter: Deferred[Event] = Deferred()
        self._waiters.append((lambda e: e.get("event") == name and
                              (worker is None or e.get("worker") == worker), waiter))
        return waiter

    def logged(self, name: str) -> list[Event]:
        return [event for event in self.events if event.get("event") == name]

    def processEnded(self, reason: Any) -> None:
        super().processEnded(reason)
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.errback(RuntimeError(f"twistd ended: {self.output[-4000:]!r}"))


def start_twistd(testcase: TestCase, directory: Path, document: dict[str, Any]
                 ) -> tuple[LoggedTwistd, ServiceManager]:
    """Write ``document`` as the settings and start twistd on them, ``$NOTIFY_SOCKET``
    naming a service manager's socket; sent SIGTERM (then waited for) at cleanup."""
    config = directory / "settings.yaml"
    config.write_text(yaml.safe_dump(document))
    # A unix socket path is limited to 108 bytes: a short directory, not the trial one.
    short = tempfile.mkdtemp(prefix="notify-")
    testcase.addCleanup(shutil.rmtree, short)
    manager = ServiceManager()
    port = reactor.listenUNIXDatagram(os.path.join(short, "notify"), manager)
    testcase.addCleanup(port.stopListening)
    process = LoggedTwistd()
    process.listening.addErrback(lambda _: None)
    spawn_twistd(testcase, process, config, directory=directory,
                 environment=gateway_environment(NOTIFY_SOCKET=os.path.join(short, "notify")))
    return process, manager
