"""A fake Ollama behind a gateway under test, and what the Ollama tests send it: the official
client, raw generate requests, and tokens the gateway must refuse."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import ollama
import openai
from twisted.internet import reactor
from twisted.trial.unittest import TestCase

from runnergw.tokens.key_generation import write_signing_keypair
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.fake_ollama import CountingSite, FakeOllama
from tests.helpers.gateway import RunningGateway, start_gateway

__all__ = [
    "FakeRunner",
    "expired_token",
    "foreign_token",
    "generate_request",
    "in_thread_with",
    "ollama_client",
    "openai_client",
    "start_fake",
    "start_proxy",
]


@attrs.define
class FakeRunner:
    """A fake Ollama listening on 127.0.0.1, with its connection-counting site."""

    fake: FakeOllama
    site: CountingSite
    port: int

    def runner(self, path: str = "/local-ollama", name: str = "local",
               **extra: Any) -> dict[str, Any]:
        """The ``runners[]`` entry that points at this fake."""
        return {"name": name, "path": path, "host": f"127.0.0.1:{self.port}", **extra}


def start_fake(testcase: TestCase) -> FakeRunner:
    """Serve a fake Ollama; at cleanup, wait until every connection to it has closed."""
    fake = FakeOllama(reactor)
    site = CountingSite(fake)
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    testcase.addCleanup(site.all_closed)
    testcase.addCleanup(port.stopListening)
    return FakeRunner(fake=fake, site=site, port=port.getHost().port)


def start_proxy(testcase: TestCase, path: str = "/local-ollama", *,
                server: dict[str, Any] | None = None,
                roles: dict[str, Any] | None = None,
                policy: dict[str, Any] | None = None,
                **runner: Any) -> tuple[FakeRunner, RunningGateway]:
    """One fake Ollama behind a TLS gateway under ``path`` (with ``roles`` and ``policy``
    sections when given)."""
    upstream = start_fake(testcase)
    gateway = start_gateway(testcase, [upstream.runner(path, **runner)], server=server,
                            roles=roles, policy=policy)
    return upstream, gateway


def ollama_client(gateway: RunningGateway, prefix: str, token: str) -> ollama.Client:
    """The official client, trusting the gateway's CA and sending the bearer token."""
    assert gateway.ca_path is not None
    return ollama.Client(
        host=gateway.url + prefix,
        verify=ssl.create_default_context(cafile=gateway.ca_path),
        headers={"Authorization": "Bearer " + token},
        trust_env=False,
        timeout=10,
    )


def openai_client(gateway: RunningGateway, prefix: str, token: str) -> openai.OpenAI:
    """The official OpenAI client on ``prefix + "/v1"``, trusting the gateway's CA, the token
    as its API key, never retrying (it would retry a 429 by itself)."""
    assert gateway.ca_path is not None
    trusted = ssl.create_default_context(cafile=gateway.ca_path)
    http_client = openai.DefaultHttpxClient(verify=trusted, trust_env=False, timeout=10)
    return openai.OpenAI(base_url=gateway.url + prefix + "/v1", api_key=token, max_retries=0,
                         http_client=http_client)


def in_thread_with(client: Any, call: Callable[[Any], Any]) -> Any:
    """Run ``call(client)`` and close the client's connections, both in the calling thread
    (an ``ollama.Client`` or an ``openai.OpenAI``)."""
    try:
        return call(client)
    finally:
        client.close()


def generate_request(gateway: RunningGateway, prefix: str = "/local-ollama", *,
                     prompt: str = "Hi", extra_headers: bytes = b"", **options: Any) -> bytes:
    """A raw streaming ``POST …/api/generate`` with a valid token (``options`` are the fake's)."""
    body = json.dumps({"model": "llama3.2:1b", "prompt": prompt, "options": options}).encode()
    return (b"POST " + prefix.encode() + b"/api/generate HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + gateway.token().encode() + b"\r\n" + extra_headers +
            b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)


def expired_token(gateway: RunningGateway) -> str:
    """A token signed with the gateway's key that expired an hour ago."""
    key = load_signing_key(gateway.key_path.read_bytes(), 4)
    return mint_token(key, subject="tester", role=None, lifetime=60, now=time.time() - 3660)


def foreign_token(testcase: TestCase) -> str:
    """A well-formed, unexpired token signed with a key the gateway does not know."""
    directory = Path(testcase.mktemp())
    directory.mkdir(parents=True)
    write_signing_keypair(directory / "other.key", directory / "other.pub")
    key = load_signing_key((directory / "other.key").read_bytes(), 4)
    return mint_token(key, subject="tester", role=None, lifetime=3600, now=time.time())
