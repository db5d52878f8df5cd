"""Several real ``twistd runnergw`` nodes sharing one test redis-server, in front of one fake
Ollama: what a cluster behind a load balancer is."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from runnergw.tokens.key_generation import write_signing_keypair
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.clients import BytesProducer, fetch
from tests.helpers.gateway import start_fake_ollama
from tests.helpers.redis_server import RedisServer
from tests.helpers.twistd import TwistdProcess, spawn_twistd

__all__ = ["ClusterCase", "ClusterNode"]


class ClusterNode(TwistdProcess):
    """One node: its JSON log events, and who waits for one of them."""

    def __init__(self) -> None:
        super().__init__()
        self.url = ""

    def kill(self) -> Deferred[int]:
        """Kill the node with -9 (no drain, no release); fires once it has ended."""
        self.transport.signalProcess("KILL")  # type: ignore[union-attr]
        return self.ended


class ClusterCase(TestCase):
    """A redis-server, a fake Ollama under ``/ollama`` and nodes started on demand, each
    with its own settings file and ledger, all with ``limits.backend: redis``."""

    timeout = 60

    def setUp(self) -> Deferred[None]:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.fake, self.ollama_port = start_fake_ollama(self)
        write_signing_keypair(self.directory / "paseto.key", self.directory / "paseto.pub")
        self.pool = HTTPConnectionPool(reactor, persistent=True)
        self.pool.maxPersistentPerHost = 64
        self.addCleanup(self.pool.closeCachedConnections)
        self.agent = Agent(reactor, pool=self.pool)
        self.redis = RedisServer(self)
        return self.redis.start()

    def document(self, name: str, role: dict[str, Any],
                 limits: dict[str, Any] | None = None) -> dict[str, Any]:
        """The settings of node ``name`` with the role ``user``."""
        return {
            "paseto": {"publicPath": str(self.directory / "paseto.pub")},
            "runners": [{"host": f"127.0.0.1:{self.ollama_port}", "path": "/ollama"}],
            "server": {"address": "127.0.0.1:0"},
            "audit": {"path": ""},
            "metrics": {"address": "127.0.0.1:0"},
            "shutdown": {"readinessDelay": 0, "grace": "5s"},
            "roles": {"user": role},
            "policy": {"ledgerPath": str(self.directory / f"{name}.sqlite")},
            "limits": {"backend": "redis", "nodes": 2, **(limits or {})},
            "redis": {"address": self.redis.address, "keyPrefix": "cluster:"},
        }

    async def start_node(self, name: str, role: dict[str, Any],
                         limits: dict[str, Any] | None = None) -> ClusterNode:
        """Start a node; it is stopped (SIGTERM) at cleanup unless it ended before."""
        config = self.directory / f"{name}.yaml"
        config.write_text(yaml.safe_dump(self.document(name, role, limits)))
        node = ClusterNode()
        spawn_twistd(self, node, config, directory=self.directory)
        node.url = await node.listening
        return node

    def token(self) -> str:
        signing = load_signing_key((self.directory / "paseto.key").read_bytes(), 4)
        return mint_token(signing, subject="tester", role="user", lifetime=600,
                          now=time.time())

    async def call(self, node: ClusterNode, path: str, body: Any = None
                   ) -> tuple[int, dict[str, str], bytes]:
        """One request with the role ``user``: status, headers, body."""
        headers = {"Authorization": f"Bearer {self.token()}"}
        producer = None
        method = "GET"
        if body is not None:
            method = "POST"
            headers["Content-Type"] = "application/json"
            producer = BytesProducer(json.dumps(body).encode())
        response, data = await fetch(self.agent, method, node.url + path, headers, producer)
        named = {name.decode().lower(): values[0].decode()
                 for name, values in response.headers.getAllRawHeaders()}
        return response.code, named, data
