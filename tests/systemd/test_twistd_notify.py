"""A real ``twistd runnergw`` under a stand-in service manager: the notify messages read from
the datagram socket named by ``$NOTIFY_SOCKET``, around real signals."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import DeferredQueue
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from runnergw.tokens.key_generation import write_signing_keypair
from tests.helpers.notify_socket import listen_as_service_manager
from tests.helpers.twistd import TwistdProcess, gateway_environment, spawn_twistd

__all__ = ["TwistdNotifyTests"]


class _NotifiedTwistd(TwistdProcess):
    """Also queues its end, as ``("ended", exit code, signal)``, so a wait for a message that
    will never come ends with the process."""

    def __init__(self, queue: DeferredQueue[Any]) -> None:
        super().__init__()
        self.queue = queue

    def processEnded(self, reason: Any) -> None:
        super().processEnded(reason)
        self.queue.put(("ended", getattr(reason.value, "exitCode", None),
                        getattr(reason.value, "signal", None)))


class TwistdNotifyTests(TestCase):
    """The plugin under twistd tells the service manager what it does."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.socket_path, manager = listen_as_service_manager(self)
        self.queue = manager.queue

    def start(self) -> _NotifiedTwistd:
        write_signing_keypair(self.directory / "paseto.key", self.directory / "paseto.pub")
        config = self.directory / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "paseto": {"publicPath": str(self.directory / "paseto.pub")},
            "runners": [{"host": "127.0.0.1:9", "path": "/"}],
            "server": {"address": "127.0.0.1:0"},
            "audit": {"path": ""},
            "metrics": {"address": "127.0.0.1:0"},
            "shutdown": {"readinessDelay": 0},
        }))
        process = _NotifiedTwistd(self.queue)
        # The end is reported through the queue; the log's listening event is not waited for.
        process.listening.addErrback(lambda _: None)
        spawn_twistd(self, process, config, directory=self.directory,
                     environment=gateway_environment(NOTIFY_SOCKET=self.socket_path),
                     stop_signal="KILL")
        return process

    async def message(self, process: _NotifiedTwistd) -> str:
        """The next notify message; fails when twistd ended instead."""
        item = await self.queue.get()
        if isinstance(item, tuple):
            self.fail(f"twistd ended ({item[1]}) before the next message: {process.output!r}")
        return item

    async def test_ready_reload_stop(self) -> None:
        """READY=1 comes once the port takes connections and names it; SIGHUP is announced
        with RELOADING=1 and the monotonic time, then READY=1; SIGTERM with STOPPING=1 and
        the drain's status, and the process then exits 0."""
        process = self.start()
        ready = await self.message(process)
        head, status = ready.split("\n")
        self.assertEqual(head, "READY=1")
        prefix = "STATUS=serving on http://127.0.0.1:"
        self.assertTrue(status.startswith(prefix), ready)
        port = int(status[len(prefix):].split(":")[0])
        client = await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), Protocol())
        client.transport.loseConnection()

        before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        os.kill(process.transport.pid, signal.SIGHUP)
        reloading = (await self.message(process)).split("\n")
        after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        self.assertEqual(reloading[0], "RELOADING=1")
        name, _, value = reloading[1].partition("=")
        self.assertEqual(name, "MONOTONIC_USEC")
        self.assertTrue(before <= int(value) <= after, (before, value, after))
        self.assertEqual((await self.message(process)).split("\n")[0], "READY=1")

        os.kill(process.transport.pid, signal.SIGTERM)
        rest = [await self.queue.get()]
        while not isinstance(rest[-1], tuple):
            rest.append(await self.queue.get())
        # Nothing was under way: the drain is clean and the process exits 0.
        self.assertEqual(rest[-1], ("ended", 0, None), process.output)
        self.assertTrue(rest[0].startswith("STOPPING=1\nSTATUS=serving on "), rest)
        self.assertIn("draining: 0 left", rest[0])

    async def test_nothing_before_ready(self) -> None:
        """The first message the service manager gets is READY=1: no status, no watchdog
        before the gateway serves."""
        process = self.start()
        first = await self.message(process)
        self.assertTrue(first.startswith("READY=1\n"), first)
