"""A real ``redis-server`` for a test: on a free loopback port (or a unix socket in a temp
directory), nothing saved to disk, stopped at the test's cleanup."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessExitedAlready
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase

from tests.helpers.certs import IssuedCert

__all__ = ["REDIS_SERVER", "RedisServer", "free_port"]

REDIS_SERVER = "/usr/bin/redis-server"


def free_port() -> int:
    """A loopback port nobody listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _RedisProcess(ProcessProtocol):
    def __init__(self) -> None:
        self.ready: Deferred[None] = Deferred()
        self.ended: Deferred[None] = Deferred()
        self.output = b""

    def outReceived(self, data: bytes) -> None:
        self.output += data
        if b"ready to accept connections" in self.output.lower() and not self.ready.called:
            self.ready.callback(None)

    errReceived = outReceived

    def processEnded(self, reason: Any) -> None:
        if not self.ready.called:
            self.ready.errback(RuntimeError(f"redis-server ended: {self.output!r}"))
        self.ended.callback(None)


class RedisServer:
    """One redis-server; ``start`` again after ``kill`` serves on the same port (or socket)."""

    def __init__(self, test: TestCase, *, password: str | None = None,
                 unix_socket: bool = False, tls: IssuedCert | None = None) -> None:
        self.password = password
        self.tls = tls
        """Serve TLS only, with this certificate."""
        self.port = 0 if unix_socket else free_port()
        directory = tempfile.mkdtemp(prefix="redis")
        test.addCleanup(lambda: os.path.isdir(directory) and _remove_tree(directory))
        self.directory = directory
        self.unix_socket = os.path.join(directory, "redis.sock") if unix_socket else ""
        self._process: _RedisProcess | None = None
        self._started_once = False
        test.addCleanup(self.kill)

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Deferred[None]:
        """Start it; fires once it accepts connections. The first start takes another free
        port when the one chosen was taken meanwhile (by a test running beside)."""
        started = self._spawn()
        if self.port and not self._started_once:
            started.addErrback(self._port_taken, 3)
        started.addCallback(self._started)
        return started

    def _started(self, _: None) -> None:
        self._started_once = True

    def _port_taken(self, failure: Failure, tries: int) -> Deferred[None] | Failure:
        if tries <= 0 or b"Address already in use" not in str(failure.value).encode():
            return failure
        self.port = free_port()
        return self._spawn().addErrback(self._port_taken, tries - 1)

    def _spawn(self) -> Deferred[None]:
        port = ["--port", str(self.port)]
        if self.tls:
            port = ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no",
                    "--tls-cert-file", os.path.abspath(self.tls.fullchain_path),
                    "--tls-key-file", os.path.abspath(self.tls.key_path)]
        args = [REDIS_SERVER, *port, "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.directory,
                "--logfile", ""]
        if self.unix_socket:
            args += ["--unixsocket", self.unix_socket, "--unixsocketperm", "700"]
        if self.password:
            args += ["--requirepass", self.password]
        self._process = _RedisProcess()
        reactor.spawnProcess(self._process, REDIS_SERVER, args, env={})
        return self._process.ready

    def pause(self) -> None:
        """Stop it (SIGSTOP): it neither answers nor loses what it holds, as a stalled
        Redis."""
        assert self._process is not None
        self._process.transport.signalProcess(signal.SIGSTOP)

    def resume(self) -> None:
        """Let it go on (SIGCONT): it reads and runs what was sent meanwhile."""
        assert self._process is not None
        self._process.transport.signalProcess(signal.SIGCONT)

    def kill(self) -> Deferred[None] | None:
        """Kill it (-9: as a crash would); fires once it has ended."""
        process, self._process = self._process, None
        if process is None or process.ended.called:
            return None
        try:
            process.transport.signalProcess("KILL")
        except ProcessExitedAlready:
            pass  # it ended on its own; its end is being reported
        return process.ended


def _remove_tree(directory: str) -> None:
    for name in os.listdir(directory):
        os.unlink(os.path.join(directory, name))
    os.rmdir(directory)
