"""A real ``twistd runnergw`` with ``server.workers: 2`` started by
``systemd-socket-activate``: the supervisor takes the passed socket and both workers serve
on it; ``server.address`` is not used."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sys
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, ensureDeferred, gatherResults
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, readBody

from tests.helpers.twistd import TWISTD, stop_at_cleanup

__all__ = ["SocketActivatedWorkersTests"]


class _Activator(ProcessProtocol):
    """``systemd-socket-activate``, then the supervisor it becomes: ``events`` gets each JSON
    log event, and tells who waits for one."""

    def __init__(self) -> None:
        self.activating: Deferred[None] = Deferred()
        self.ended: Deferred[int] = Deferred()
        self.events: list[dict[str, Any]] = []
        self.errors = b""
        self._buffer = b""
        self._waiting: list[tuple[str, int, Deferred[None]]] = []

    def errReceived(self, data: bytes) -> None:
        self.errors += data
        if not self.activating.called and b"Listening on " in self.errors:
            self.activating.callback(None)

    def outReceived(self, data: bytes) -> None:
        self._buffer += data
        while b"\n" in self._buffer:
            line, self._buffer = self._buffer.split(b"\n", 1)
            if line.startswith(b"{"):
                self.events.append(json.loads(line))
        for waiting in list(self._waiting):
            if len(self.named(waiting[0])) >= waiting[1]:
                self._waiting.remove(waiting)
                waiting[2].callback(None)

    def named(self, name: str) -> list[dict[str, Any]]:
        return [event for event in self.events if event.get("event") == name]

    def logged(self, name: str, count: int) -> Deferred[None]:
        """Fires once ``count`` events ``name`` were logged."""
        waiter: Deferred[None] = Deferred()
        self._waiting.append((name, count, waiter))
        self.outReceived(b"")
        return waiter

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if reason.check(ProcessTerminated, ProcessDone) else -1
        if not self.activating.called:
            self.activating.errback(RuntimeError(f"ended ({code}): {self.errors!r}"))
        for _, _, waiter in self._waiting:
            waiter.errback(RuntimeError(f"ended ({code}): {self.errors[-2000:]!r}"))
        self._waiting = []
        self.ended.callback(code)


class SocketActivatedWorkersTests(TestCase):
    """Two workers on the socket the service manager passes."""

    timeout = 60

    async def test_workers_serve_the_passed_socket(self) -> None:
        """The first connection starts the gateway; the supervisor logs the socket it took
        and that server.address is not used, both workers listen on the passed port, and
        requests on it are answered."""
        tool = shutil.which("systemd-socket-activate")
        self.assertIsNotNone(tool, "systemd-socket-activate is missing (Debian package "
                                   "systemd, installed by .ci/run)")
        directory = Path(self.mktemp()).resolve()
        directory.mkdir(parents=True)
        config = directory / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "runners": [{"host": "127.0.0.1:9", "path": "/", "filters": ["audit"]}],
            "server": {"address": "192.0.2.1:443", "workers": 2, "allowPlaintext": True},
            "audit": {"path": ""},
            "metrics": {"address": "127.0.0.1:0"},
            "shutdown": {"readinessDelay": 0},
        }))
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        process = _Activator()
        argv = [tool, f"--listen=127.0.0.1:{port}", "--fdname=runnergw",
                f"--setenv=PYTHONPATH={os.environ.get('PYTHONPATH', '')}",
                sys.executable, "-c", TWISTD, "--logger", "runnergw.logs.json_observer",
                "-n", "--pidfile=", "runnergw", "--config", str(config)]
        transport = reactor.spawnProcess(process, tool, argv, env=dict(os.environ),
                                         path=str(directory))

        stop_at_cleanup(self, transport, process.ended)
        await process.activating
        agent = Agent(reactor)
        url = f"http://127.0.0.1:{port}/api/tags".encode()

        async def status() -> int:
            response = await agent.request(b"GET", url)
            await readBody(response)
            return response.code

        first = ensureDeferred(status())  # starts the gateway
        await process.logged("listening", 2)
        statuses = await gatherResults([first, *(ensureDeferred(status()) for _ in range(8))])
        # The runner's address refuses connections: 502 from whichever worker answered.
        self.assertEqual(statuses, [502] * 9)
        [adopted] = process.named("socket_adopted")
        self.assertEqual((adopted["socket"], adopted["address"]),
                         ("fd 3 (runnergw)", f"127.0.0.1:{port}"))
        self.assertEqual({(e["worker"], e["url"]) for e in process.named("listening")},
                         {(0, f"http://127.0.0.1:{port}"), (1, f"http://127.0.0.1:{port}")})
