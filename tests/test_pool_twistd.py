"""A real ``twistd runnergw`` with a runner of two hosts: one host dies and comes back while
the gateway serves; the operator sees it in the JSON log, the clients do not."""

from __future__ import annotations

import json
import time
from io import BytesIO
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, readBody
from twisted.web.http_headers import Headers

from runnergw.tokens.key_generation import write_signing_keypair
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.killable_ollama import KillableOllama
from tests.helpers.twistd import TwistdProcess, spawn_twistd

__all__ = ["TwistdPoolTests"]

_BODY = b'{"model":"llama3.2:1b","prompt":"Hi","stream":false}'


class _LoggingTwistd(TwistdProcess):
    """Also fires ``event(name, host)`` waiters as the JSON log lines arrive."""

    def __init__(self) -> None:
        super().__init__()
        self._lines = b""
        self._waiters: list[tuple[str, str, Deferred[dict[str, Any]]]] = []
        self.seen: list[dict[str, Any]] = []

    def outReceived(self, data: bytes) -> None:
        super().outReceived(data)
        self._lines += data
        *lines, self._lines = self._lines.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.seen.append(event)
            still = []
            for name, host, waiter in self._waiters:
                if event.get("event") == name and event.get("host") == host:
                    waiter.callback(event)
                else:
                    still.append((name, host, waiter))
            self._waiters = still

    def event(self, name: str, host: str) -> Deferred[dict[str, Any]]:
        """Fires with the first logged event ``name`` about ``host``."""
        for event in self.seen:
            if event.get("event") == name and event.get("host") == host:
                return succeed(event)
        waiter: Deferred[dict[str, Any]] = Deferred()
        self._waiters.append((name, host, waiter))
        return waiter


class TwistdPoolTests(TestCase):
    """Two fake Ollama hosts behind ``/gpu`` of a twistd gateway."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.hosts = [KillableOllama(reactor), KillableOllama(reactor)]
        for host in self.hosts:
            self.addCleanup(host.stop)

    def start(self) -> _LoggingTwistd:
        key_path = self.directory / "paseto.key"
        write_signing_keypair(key_path, self.directory / "paseto.pub")
        self.token = mint_token(load_signing_key(key_path.read_bytes(), 4), subject="tester",
                                role=None, lifetime=600, now=time.time())
        config = self.directory / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "paseto": {"publicPath": str(self.directory / "paseto.pub")},
            "runners": [{"name": "gpu", "path": "/gpu",
                         "hosts": [host.address for host in self.hosts],
                         "pool": {"ejectAfter": 1, "ejectFor": "100ms",
                                  "probeInterval": "100ms"}}],
            "server": {"address": "127.0.0.1:0"},
            "metrics": {"address": "127.0.0.1:0"},
            "audit": {"path": ""},
        }))
        process = _LoggingTwistd()
        spawn_twistd(self, process, config, directory=self.directory, stop_signal="KILL")
        return process

    async def generate(self, url: str, count: int) -> list[int]:
        agent = Agent(reactor)
        statuses = []
        for _ in range(count):
            response = await agent.request(
                b"POST", (url + "/gpu/api/generate").encode(),
                Headers({"Authorization": [f"Bearer {self.token}"],
                         "Content-Type": ["application/json"], "Connection": ["close"]}),
                FileBodyProducer(BytesIO(_BODY)))
            await readBody(response)
            statuses.append(response.code)
        return statuses

    async def test_host_dies_and_returns(self) -> None:
        """Requests are all answered while a host is down, by the other one; the log says
        it was ejected and readmitted, and it serves again."""
        process = self.start()
        url = await process.listening
        killed, other = self.hosts
        self.assertEqual(await self.generate(url, 4), [200] * 4)
        self.assertEqual([len(h.generations()) for h in self.hosts], [2, 2])
        await killed.kill()
        self.assertEqual(await self.generate(url, 6), [200] * 6)
        self.assertEqual([len(h.generations()) for h in self.hosts], [2, 8])
        ejected = await process.event("upstream_host_ejected", killed.address)
        self.assertEqual(ejected["runner"], "gpu")
        killed.revive()
        await process.event("upstream_host_readmitted", killed.address)
        self.assertEqual(await self.generate(url, 4), [200] * 4)
        self.assertGreater(len(killed.generations()), 2)
