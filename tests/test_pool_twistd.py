"""A real ``twistd runnergw`` with a runner of two hosts: one host dies and comes back while
the gateway serves; the operator sees it in the JSON log, the clients do not."""

from __future__ import annotations

import time
from io import BytesIO
from pathlib import Path

import yaml
from twisted.internet import reactor
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


class TwistdPoolTests(TestCase):
    """Two fake Ollama hosts behind ``/gpu`` of a twistd gateway."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.hosts = [KillableOllama(reactor), KillableOllama(reactor)]
        for host in self.hosts:
            self.addCleanup(host.stop)

    def start(self) -> TwistdProcess:
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
        process = TwistdProcess()
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
        ejected = await process.when_logged("upstream_host_ejected", host=killed.address)
        self.assertEqual(ejected["runner"], "gpu")
        killed.revive()
        await process.when_logged("upstream_host_readmitted", host=killed.address)
        self.assertEqual(await self.generate(url, 4), [200] * 4)
        self.assertGreater(len(killed.generations()), 2)
