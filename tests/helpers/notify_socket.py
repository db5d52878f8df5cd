"""The service manager's end of ``$NOTIFY_SOCKET`` in tests: a datagram socket the gateway's
messages are read from."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import DeferredQueue
from twisted.internet.protocol import DatagramProtocol
from twisted.trial.unittest import SynchronousTestCase

__all__ = ["ServiceManager", "ServiceManagerSocket", "listen_as_service_manager"]


class ServiceManager(DatagramProtocol):
    """The service manager's end of ``$NOTIFY_SOCKET`` on the reactor: each message queued
    as text (a test may queue other things there too, such as a process's end)."""

    noisy = False

    def __init__(self) -> None:
        self.queue: DeferredQueue[Any] = DeferredQueue()

    def datagramReceived(self, datagram: bytes, address: Any) -> None:
        self.queue.put(datagram.decode("utf-8"))

    async def next_starting(self, prefix: str) -> str:
        """The next message that starts with ``prefix`` (others are skipped: statuses)."""
        while True:
            message = await self.queue.get()
            if isinstance(message, str) and message.startswith(prefix):
                return message


def listen_as_service_manager(testcase: Any) -> tuple[str, ServiceManager]:
    """A notify socket for a real gateway process: its path (for ``$NOTIFY_SOCKET``) and the
    manager reading it; both gone at cleanup. The path is in a short directory of its own:
    a unix socket path is limited to 108 bytes, which the trial directory may pass."""
    short = tempfile.mkdtemp(prefix="notify-")
    testcase.addCleanup(shutil.rmtree, short)
    path = os.path.join(short, "notify")
    manager = ServiceManager()
    port = reactor.listenUNIXDatagram(path, manager)
    testcase.addCleanup(port.stopListening)
    return path, manager


class ServiceManagerSocket:
    """A service manager's end: a datagram socket bound at ``name`` (``@…`` for an abstract
    one), read without blocking."""

    def __init__(self, testcase: SynchronousTestCase, abstract: bool = False) -> None:
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        testcase.addCleanup(self.socket.close)
        if abstract:
            self.socket.bind("")  # autobind: a unique abstract name
            self.name = "@" + self.socket.getsockname()[1:].decode("ascii")
        else:
            # A unix socket path is limited to 108 bytes: a short directory of its own, not
            # the deep trial temp directory.
            directory = tempfile.mkdtemp(prefix="notify-")
            testcase.addCleanup(shutil.rmtree, directory)
            self.name = os.path.join(directory, "notify")
            self.socket.bind(self.name)

    def messages(self) -> list[str]:
        """Every datagram received so far, in order."""
        received = []
        while True:
            try:
                received.append(self.socket.recv(4096, socket.MSG_DONTWAIT).decode("utf-8"))
            except BlockingIOError:
                return received
