"""``twistd runnergw`` with its metrics listener, as Prometheus and a load balancer see it."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

import yaml
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import reactor
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, FileBodyProducer, HTTPConnectionPool, readBody
from twisted.web.http_headers import Headers

from runnergw.tokens.key_generation import write_signing_keypair
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.gateway import start_fake_ollama
from tests.helpers.twistd import TwistdProcess, spawn_twistd

__all__ = ["TwistdMetricsTests"]

_MODEL = "llama3.2:1b"


class TwistdMetricsTests(TestCase):
    """A real gateway process in front of a fake Ollama, its metrics scraped over HTTP."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))

    def start(self) -> TwistdProcess:
        """The gateway with a role and a usage ledger (so tokens are counted), plain HTTP on
        loopback, its metrics on a free port."""
        _, ollama_port = start_fake_ollama(self)
        key, public = self.directory / "paseto.key", self.directory / "paseto.pub"
        write_signing_keypair(key, public)
        self.key = key
        config = self.directory / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "paseto": {"keyPath": str(key), "publicPath": str(public)},
            "runners": [{"name": "local", "host": f"127.0.0.1:{ollama_port}",
                         "path": "/ollama"}],
            "server": {"address": "127.0.0.1:0"},
            "audit": {"path": ""},
            "roles": {"user": {"models": ["llama3.2:*"]}},
            "policy": {"defaultRole": "user",
                       "ledgerPath": str(self.directory / "usage.sqlite")},
            "metrics": {"address": "127.0.0.1:0"},
        }))
        process = TwistdProcess()
        spawn_twistd(self, process, config, directory=self.directory)
        return process

    async def request(self, method: str, url: str, body: bytes | None = None,
                      token: str | None = None) -> tuple[int, bytes]:
        headers = Headers({b"Connection": [b"close"]})
        if token is not None:
            headers.addRawHeader(b"Authorization", f"Bearer {token}".encode())
        producer: Any = None
        if body is not None:
            producer = FileBodyProducer(io.BytesIO(body))
        response = await self.agent.request(method.encode(), url.encode(), headers, producer)
        return response.code, await readBody(response)

    def token(self) -> str:
        key = load_signing_key(self.key.read_bytes(), 4)
        return mint_token(key, subject="tester", role="user", lifetime=600.0, now=time.time())

    async def test_scraped_after_requests(self) -> None:
        """Two generations and a request without a token, then ``/metrics``: the counts and
        the tokens of the generations, as prometheus-client's parser reads them."""
        process = self.start()
        url = await process.listening
        metrics_url = await process.metrics_listening
        self.assertTrue(metrics_url.startswith("http://127.0.0.1:"))
        token = self.token()
        generate = b'{"model":"%s","prompt":"Hi","stream":false}' % _MODEL.encode()
        for _ in range(2):
            status, _ = await self.request("POST", f"{url}/ollama/api/generate", generate,
                                           token)
            self.assertEqual(status, 200)
        status, _ = await self.request("GET", f"{url}/ollama/api/tags")
        self.assertEqual(status, 401)
        status, text = await self.request("GET", f"{metrics_url}/metrics")
        self.assertEqual(status, 200)
        found = {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
                 for family in text_string_to_metric_families(text.decode())
                 for sample in family.samples}
        self.assertEqual(found[("runnergw_requests_total", (
            ("method_class", "write"), ("outcome", "ok"), ("reason", ""), ("route", "local"),
            ("status", "200")))], 2.0)
        self.assertEqual(found[("runnergw_requests_total", (
            ("method_class", "read"), ("outcome", "denied"), ("reason", "token"),
            ("route", "local"), ("status", "401")))], 1.0)
        usage = (("gen_ai_operation_name", "text_completion"),
                 ("gen_ai_request_model", _MODEL), ("gen_ai_response_model", _MODEL),
                 ("gen_ai_system", "ollama"))
        self.assertEqual(found[("gen_ai_client_token_usage_count",
                                usage + (("gen_ai_token_type", "output"),))], 2.0)
        self.assertEqual(found[("gen_ai_client_token_usage_sum",
                                usage + (("gen_ai_token_type", "output"),))], 6.0)
        self.assertEqual(found[("runnergw_reloads_total", (("result", "failed"),))], 0.0)

    async def test_health_and_readiness(self) -> None:
        """``/healthz`` and ``/readyz`` answer 200 from a gateway that serves (once it said
        it is ready: its usage ledger is open)."""
        process = self.start()
        await process.listening
        metrics_url = await process.metrics_listening
        await process.ready
        self.assertEqual(await self.request("GET", f"{metrics_url}/healthz"), (200, b"ok\n"))
        self.assertEqual(await self.request("GET", f"{metrics_url}/readyz"), (200, b"ready\n"))
        status, _ = await self.request("GET", f"{metrics_url}/")
        self.assertEqual(status, 404)
