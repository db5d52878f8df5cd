"""A real ``twistd runnergw`` started by ``systemd-socket-activate``: the gateway serves, over
TLS, on the socket it is passed instead of ``server.address``, and says so in its log."""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol, Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.logger import eventFromJSON, formatEvent
from twisted.trial.unittest import TestCase

from runnergw.tokens.key_generation import write_signing_keypair
from tests.helpers.certs import make_ca
from tests.helpers.twistd import TWISTD, stop_at_cleanup

__all__ = ["SocketActivationTests"]

_CONFIGURED = "192.0.2.1:443"
"""``server.address`` in the settings: an address of no interface here, so the gateway cannot
serve if it tries to bind it."""


class _Activator(ProcessProtocol):
    """``systemd-socket-activate``, then the gateway it becomes: ``activating`` fires once the
    tool listens; both Deferreds fail if the process ends first."""

    def __init__(self) -> None:
        self.activating: Deferred[None] = Deferred()
        self.ended: Deferred[int] = Deferred()
        self.output = b""
        self.errors = b""

    def outReceived(self, data: bytes) -> None:
        self.output += data

    def errReceived(self, data: bytes) -> None:
        self.errors += data
        if not self.activating.called and b"Listening on " in self.errors:
            self.activating.callback(None)

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if reason.check(ProcessTerminated, ProcessDone) else -1
        if not self.activating.called:
            self.activating.errback(RuntimeError(f"ended ({code}): {self.errors!r}"))
        self.ended.callback(code)

    def events(self) -> list[dict[str, Any]]:
        return [eventFromJSON(line) for line in self.output.decode().splitlines()
                if line.startswith("{")]


class _Answer(Protocol):
    """Sends one request and collects the answer until the server closes."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[bytes] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"GET /api/tags HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        self.data += data

    def connectionLost(self, reason: object = None) -> None:
        self.closed.callback(self.data)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class SocketActivationTests(TestCase):
    """The plugin under twistd, given its listening socket the way systemd gives it."""

    timeout = 60

    def setUp(self) -> None:
        self.tool = shutil.which("systemd-socket-activate")
        if self.tool is None:
            raise self.skipTest("systemd-socket-activate is not installed (Debian package "
                                "systemd)")
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)

    def start(self, port: int, settings: dict[str, Any]) -> _Activator:
        write_signing_keypair(self.directory / "paseto.key", self.directory / "paseto.pub")
        config = self.directory / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "paseto": {"publicPath": str(self.directory / "paseto.pub")},
            "runners": [{"host": "127.0.0.1:9", "path": "/"}],
            "audit": {"path": ""},
            "metrics": {"address": "127.0.0.1:0"},
            **settings,
        }))
        process = _Activator()
        # The tool gives the program a clean environment but for these (-E).
        passed = [f"--setenv=PYTHONPATH={os.environ.get('PYTHONPATH', '')}"]
        argv = [self.tool, f"--listen=127.0.0.1:{port}", "--fdname=runnergw", *passed,
                sys.executable, "-c", TWISTD, "--logger", "runnergw.logs.json_observer",
                "-n", "--pidfile=", "runnergw", "--config", str(config)]
        transport = reactor.spawnProcess(process, self.tool, argv, env=dict(os.environ),
                                         path=str(self.directory))

        stop_at_cleanup(self, transport, process.ended, "KILL")
        return process

    async def test_serves_on_the_passed_socket(self) -> None:
        """The first connection to the socket starts the gateway, which answers it over TLS
        (401: no token), logs the socket it took and that ``server.address`` is not used, and
        announces the passed port as where it listens."""
        ca = make_ca(str(self.directory / "ca"))
        issued = ca.issue(str(self.directory / "tls"), "gateway")
        port = _free_port()
        process = self.start(port, {"server": {
            "address": _CONFIGURED, "certificatePath": str(issued.fullchain_path),
            "keyPath": str(issued.key_path)}})
        await process.activating

        root = Certificate.loadPEM(Path(issued.ca_path).read_bytes())
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port,
                                      optionsForClientTLS("127.0.0.1", trustRoot=root))
        client = await connectProtocol(endpoint, _Answer())
        answer = await client.closed
        self.assertTrue(answer.startswith(b"HTTP/1.1 401 "), (answer, process.output))

        events = process.events()
        [adopted] = [e for e in events if e.get("event") == "socket_adopted"]
        self.assertEqual(adopted["socket"], "fd 3 (runnergw)")
        self.assertEqual(adopted["address"], f"127.0.0.1:{port}")
        self.assertIn(f"server.address ({_CONFIGURED}) is not used", formatEvent(adopted))
        [listening] = [e for e in events if e.get("event") == "listening"]
        self.assertEqual(listening["url"], f"https://127.0.0.1:{port}")
