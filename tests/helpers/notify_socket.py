"""The service manager's end of ``$NOTIFY_SOCKET`` in tests: a datagram socket the gateway's
messages are read from."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from twisted.trial.unittest import SynchronousTestCase

__all__ = ["ServiceManagerSocket"]


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
