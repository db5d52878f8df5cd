"""A real ``twistd runnergw`` stopped with real signals while a stream is under way: the
stream finishing inside the grace, one cut after it, and SIGUSR1 reopening the audit file."""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.trial.unittest import TestCase

from runnergw.exit_status import DRAIN_CUT
from runnergw.tokens.key_generation import write_signing_keypair
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.gateway import start_fake_ollama
from tests.helpers.notify_socket import listen_as_service_manager
from tests.helpers.twistd import TwistdProcess, gateway_environment, spawn_twistd

__all__ = ["AuditReopenTests", "TwistdDrainTests"]


class _RawClient(Protocol):
    """Keeps every byte it receives; ``until`` waits for a condition on them."""

    def __init__(self) -> None:
        self.data = b""
        self.closed: Deferred[None] = Deferred()
        self._waiters: list[tuple[Callable[[bytes], bool], Deferred[bytes]]] = []

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        for waiter in list(self._waiters):
            if waiter[0](self.data):
                self._waiters.remove(waiter)
                waiter[1].callback(self.data)

    def connectionLost(self, reason: Any = None) -> None:
        self.closed.callback(None)

    def until(self, condition: Callable[[bytes], bool]) -> Deferred[bytes]:
        waiter: Deferred[bytes] = Deferred()
        if condition(self.data):
            waiter.callback(self.data)
        else:
            self._waiters.append((condition, waiter))
        return waiter


class _TwistdCase(TestCase):
    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)
        self.socket_path, self.manager = listen_as_service_manager(self)
        self.fake, fake_port = start_fake_ollama(self)
        self.fake_port = fake_port
        self.audit_path = self.directory / "audit.log"

    def start(self, shutdown: dict[str, Any]) -> TwistdProcess:
        write_signing_keypair(self.directory / "paseto.key", self.directory / "paseto.pub")
        config = self.directory / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "paseto": {"publicPath": str(self.directory / "paseto.pub")},
            "runners": [{"host": f"127.0.0.1:{self.fake_port}", "path": "/"}],
            "server": {"address": "127.0.0.1:0"},
            "audit": {"path": str(self.audit_path)},
            "shutdown": shutdown,
            "metrics": {"address": "127.0.0.1:0"},
        }))
        process = TwistdProcess()
        spawn_twistd(self, process, config, directory=self.directory,
                     environment=gateway_environment(NOTIFY_SOCKET=self.socket_path),
                     stop_signal="KILL")
        self.process = process
        return process

    async def request(self, url: str, path: str, body: bytes = b"") -> _RawClient:
        """Send one request on a connection of its own; the answer is read as it comes."""
        host, port = url.rsplit("/", 1)[1].rsplit(":", 1)
        client = await connectProtocol(TCP4ClientEndpoint(reactor, host, int(port)),
                                       _RawClient())
        key = load_signing_key((self.directory / "paseto.key").read_bytes(), 4)
        token = mint_token(key, subject="tester", role=None, lifetime=600, now=time.time(),
                           extra={})
        method = "POST" if body else "GET"
        client.transport.write(
            f"{method} {path} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {token}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body)
        self.addCleanup(lambda: client.transport.abortConnection())
        return client

    async def notice(self, prefix: str) -> str:
        """The next notify message starting with ``prefix`` (others are skipped)."""
        return await self.manager.next_starting(prefix)

    async def stream(self, url: str) -> tuple[_RawClient, Any]:
        """A generation under way: its first line reached the client, the rest held."""
        self.fake.gated = True
        arrived = self.fake.next_request()
        client = await self.request(url, "/api/generate", json.dumps(
            {"model": "llama3.2:1b", "prompt": "hi", "options": {"num_predict": 3}}).encode())
        record = await arrived
        await record.held()
        await client.until(lambda data: b'"t0 "' in data)
        return client, record


def _content(data: bytes) -> bytes:
    """The body of a chunked answer."""
    head, _, body = data.partition(b"\r\n\r\n")
    content = b""
    while body:
        size_text, _, rest = body.partition(b"\r\n")
        size = int(size_text, 16)
        if size == 0:
            break
        content, body = content + rest[:size], rest[size + 2:]
    return content


def _lines(data: bytes) -> list[Any]:
    """The NDJSON lines of a chunked answer."""
    return [json.loads(line) for line in _content(data).splitlines()]


class TwistdDrainTests(_TwistdCase):
    """SIGTERM with a stream under way."""

    async def test_stream_finishing_inside_the_grace(self) -> None:
        """The client gets the whole answer and its proper end; systemd is told the gateway
        stops and asked to wait; new requests are still served during the readiness delay;
        the process exits 0."""
        process = self.start({"readinessDelay": "4s", "grace": "30s"})
        url = await process.listening
        await self.notice("READY=1")
        client, record = await self.stream(url)
        os.kill(process.transport.pid, signal.SIGTERM)
        stopping = await self.notice("STOPPING=1")
        self.assertIn("draining: 1 left", stopping)
        # systemd is asked to wait for the delay and the grace (and a margin) at once.
        extend = await self.notice("EXTEND_TIMEOUT_USEC=")
        self.assertGreaterEqual(int(extend.partition("=")[2]), 33_000_000)
        # During the readiness delay a new request is still served.
        self.fake.gated = False
        late = await self.request(url, "/api/version")
        await late.until(lambda data: b"\r\n\r\n" in data)
        self.assertTrue(late.data.startswith(b"HTTP/1.1 200"), late.data)
        await process.when_logged("drain_refusing")
        for _ in range(3):  # the three pieces after the first: two tokens and the last line
            await record.held()
            record.release()
        await client.until(lambda data: data.endswith(b"0\r\n\r\n"))
        code = await process.ended
        lines = _lines(client.data)
        self.assertEqual([line.get("done") for line in lines], [False, False, False, True])
        await client.closed  # not kept alive: the gateway closed it after the answer
        self.assertEqual(code, 0, process.output)

    async def test_stream_cut_after_the_grace(self) -> None:
        """A stream outlasting the grace ends with a final well-formed error line and its
        proper end, and the exit status says the drain was not clean."""
        process = self.start({"readinessDelay": 0, "grace": "1s"})
        url = await process.listening
        client, record = await self.stream(url)
        os.kill(process.transport.pid, signal.SIGTERM)
        await client.until(lambda data: data.endswith(b"0\r\n\r\n"))
        code = await process.ended
        lines = _lines(client.data)
        self.assertEqual(lines[-1], {"error": "the gateway is shutting down"})
        self.assertEqual(lines[0].get("response"), "t0 ")
        self.assertEqual(code, DRAIN_CUT, process.output)

    async def test_openai_stream_cut_after_the_grace(self) -> None:
        """An OpenAI-style SSE stream outlasting the grace ends with an error event in
        OpenAI's shape and its proper end."""
        process = self.start({"readinessDelay": 0, "grace": "1s"})
        url = await process.listening
        self.fake.gated = True
        arrived = self.fake.next_request()
        client = await self.request(url, "/v1/chat/completions", json.dumps(
            {"model": "llama3.2:1b", "stream": True, "max_tokens": 3,
             "messages": [{"role": "user", "content": "hi"}]}).encode())
        await (await arrived).held()
        await client.until(lambda data: b'"t0 "' in data)
        os.kill(process.transport.pid, signal.SIGTERM)
        await client.until(lambda data: data.endswith(b"0\r\n\r\n"))
        self.assertEqual(await process.ended, DRAIN_CUT, process.output)
        events = _content(client.data).split(b"\n\n")
        self.assertEqual(events[-1], b"")
        self.assertTrue(events[-2].startswith(b"data: "), events)
        error = json.loads(events[-2][len(b"data: "):])["error"]
        self.assertEqual(error["message"], "the gateway is shutting down")

    async def test_second_sigterm_cuts_at_once(self) -> None:
        """A second SIGTERM during the readiness delay ends the stream at once."""
        process = self.start({"readinessDelay": "60s", "grace": "60s"})
        url = await process.listening
        client, record = await self.stream(url)
        os.kill(process.transport.pid, signal.SIGTERM)
        await self.notice("STOPPING=1")
        os.kill(process.transport.pid, signal.SIGTERM)
        await client.until(lambda data: data.endswith(b"0\r\n\r\n"))
        self.assertEqual(await process.ended, DRAIN_CUT, process.output)


class AuditReopenTests(_TwistdCase):
    """SIGUSR1 for logrotate."""

    async def test_audit_goes_on_in_a_new_file(self) -> None:
        """After the audit file was renamed and SIGUSR1 sent, the next request's line goes to
        a new file at the configured path."""
        process = self.start({"readinessDelay": 0})
        url = await process.listening
        first = await self.request(url, "/api/version")
        await first.until(lambda data: b"\r\n\r\n" in data)
        rotated = self.directory / "audit.log.1"
        os.rename(self.audit_path, rotated)
        os.kill(process.transport.pid, signal.SIGUSR1)
        await process.when_logged("audit_reopened")
        second = await self.request(url, "/api/version")
        await second.until(lambda data: b"\r\n\r\n" in data)
        os.kill(process.transport.pid, signal.SIGTERM)
        self.assertEqual(await process.ended, 0, process.output)
        self.assertEqual(len(rotated.read_text().splitlines()), 1)
        self.assertEqual(len(self.audit_path.read_text().splitlines()), 1)
