"""The listening socket the workers share, as the supervisor opens it on
``server.address``."""

from __future__ import annotations

import fcntl
import os
import socket

from twisted.trial.unittest import SynchronousTestCase

from runnergw.config.reader import ListenAddress
from runnergw.workers.listening_socket import open_shared_socket

__all__ = ["SharedSocketTests"]


class SharedSocketTests(SynchronousTestCase):
    """``open_shared_socket`` without a socket passed by systemd."""

    def test_bound_and_listening(self) -> None:
        """A socket listening on the address (port 0: the port chosen), non-blocking as
        the workers' reactors need it, accepting connections before any worker runs."""
        shared = open_shared_socket(ListenAddress("127.0.0.1", 0))
        self.addCleanup(os.close, shared.fd)
        self.assertEqual(shared.host, "127.0.0.1")
        self.assertEqual(shared.passed, "")
        self.assertTrue(fcntl.fcntl(shared.fd, fcntl.F_GETFL) & os.O_NONBLOCK)
        client = socket.create_connection(("127.0.0.1", shared.port), timeout=5)
        client.close()
        self.assertEqual(shared.address, f"127.0.0.1:{shared.port}")

    def test_busy_address_refused(self) -> None:
        """An address already in use stops the start, naming it."""
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with self.assertRaises(SystemExit) as raised:
            open_shared_socket(ListenAddress("127.0.0.1", port))
        self.assertIn(f"cannot listen on 127.0.0.1:{port}", str(raised.exception))
