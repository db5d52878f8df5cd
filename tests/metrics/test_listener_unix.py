"""The metrics listener on a unix socket, as each of several workers serves its pages for
its supervisor."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile

from prometheus_client import CollectorRegistry
from twisted.internet import reactor
from twisted.internet.threads import deferToThread
from twisted.trial.unittest import TestCase

from runnergw.health import Readiness
from runnergw.metrics.listener import MetricsListener
from runnergw.metrics.pages import metrics_root

__all__ = ["UnixMetricsListenerTests"]


def _get(path: str, page: str) -> bytes:
    with socket.socket(socket.AF_UNIX) as client:
        client.settimeout(10)
        client.connect(path)
        client.sendall(f"GET {page} HTTP/1.0\r\n\r\n".encode())
        received = b""
        while chunk := client.recv(65536):
            received += chunk
        return received


class UnixMetricsListenerTests(TestCase):
    """``MetricsListener`` given a path."""

    def setUp(self) -> None:
        directory = tempfile.mkdtemp(prefix="metrics-")  # unix paths are short
        self.addCleanup(shutil.rmtree, directory)
        self.path = os.path.join(directory, "metrics-0")

    async def test_serves_pages(self) -> None:
        """The pages are served on the socket, which only its owner may open."""
        listener = MetricsListener(reactor, self.path,
                                   metrics_root(CollectorRegistry(), Readiness()))
        self.assertEqual(listener.listen(), f"unix:{self.path}")
        self.addCleanup(listener.stop)
        self.assertEqual(os.stat(self.path).st_mode & 0o777, 0o600)
        answer = await deferToThread(_get, self.path, "/readyz")
        self.assertTrue(answer.startswith(b"HTTP/1.0 200 "), answer)
        self.assertTrue(answer.endswith(b"\r\n\r\nready\n"), answer)

    def test_busy_path_refused(self) -> None:
        """A path something else listens on stops the start, naming it."""
        busy = socket.socket(socket.AF_UNIX)
        self.addCleanup(busy.close)
        busy.bind(self.path)
        listener = MetricsListener(reactor, self.path,
                                   metrics_root(CollectorRegistry(), Readiness()))
        with self.assertRaises(SystemExit) as raised:
            listener.listen()
        self.assertIn(f"cannot listen on {self.path}", str(raised.exception))
