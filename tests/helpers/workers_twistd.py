"""A real ``twistd runnergw`` with ``server.workers`` under a stand-in service manager: its
JSON log events (the workers' carry their ``worker``), its notify messages, its end."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import DeferredQueue
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
    """A gateway of several workers: ``next_event(name, worker=i)`` waits for one
    worker's event."""


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
