"""Request bodies through the Ollama proxy terminal: large uploads, size limits, slow uploads."""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.trial.unittest import TestCase

from tests.helpers.clients import (
    AuditTap,
    BytesProducer,
    RawClient,
    fetch,
    parse_response,
    raw_connect,
    tls_agent,
)
from tests.helpers.gateway import RunningGateway
from tests.helpers.ollama_proxy import start_proxy

__all__ = ["BodyLimitTests", "LargeBodyTests", "SlowUploadTests"]

_BLOB = os.urandom(32 * 1024 * 1024)
_BLOB_DIGEST = hashlib.sha256(_BLOB).hexdigest()


def _blob_head(gateway: RunningGateway, framing: bytes) -> bytes:
    return (b"POST /local-ollama/api/blobs/sha256:" + _BLOB_DIGEST.encode() + b" HTTP/1.1\r\n"
            b"Host: gw\r\nAuthorization: Bearer " + gateway.token().encode() + b"\r\n"
            + framing + b"Connection: close\r\n\r\n")


class LargeBodyTests(TestCase):
    """A model blob upload reaches the runner byte for byte, streamed rather than buffered."""

    timeout = 20

    async def _upload(self, chunked: bool) -> None:
        upstream, gateway = start_proxy(self)
        audit = AuditTap(self, gateway)
        agent = tls_agent(self, gateway)
        response, _ = await fetch(
            agent, "POST", f"{gateway.url}/local-ollama/api/blobs/sha256:{_BLOB_DIGEST}",
            {"Authorization": "Bearer " + gateway.token()},
            BytesProducer(_BLOB, chunked=chunked))
        self.assertEqual(response.code, 201)
        [seen] = upstream.fake.requests
        self.assertEqual(seen.path, f"/api/blobs/sha256:{_BLOB_DIGEST}")
        self.assertEqual(len(seen.body), len(_BLOB))
        self.assertEqual(seen.body_sha256, _BLOB_DIGEST)
        if chunked:
            self.assertNotIn("content-length", seen.headers)
            self.assertEqual(seen.headers["transfer-encoding"], ["chunked"])
        else:
            self.assertEqual(seen.headers["content-length"], [str(len(_BLOB))])
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["bytes_in"]), (201, len(_BLOB)))

    async def test_large_upload_with_content_length(self) -> None:
        """A 32 MiB blob with ``Content-Length`` arrives intact."""
        await self._upload(chunked=False)

    async def test_large_chunked_upload(self) -> None:
        """A 32 MiB blob sent with chunked transfer encoding arrives intact."""
        await self._upload(chunked=True)


class BodyLimitTests(TestCase):
    """A runner's ``maxBodySize`` is enforced before any of the body is forwarded."""

    timeout = 10

    async def test_declared_oversized_body_is_refused_before_the_runner(self) -> None:
        """A ``Content-Length`` over ``maxBodySize`` gets 413 at once, without ``100 Continue``."""
        upstream, gateway = start_proxy(self, maxBodySize="1MiB")
        audit = AuditTap(self, gateway)
        client = await raw_connect(self, gateway)
        client.send(_blob_head(gateway, b"Content-Length: %d\r\nExpect: 100-continue\r\n"
                                        % (2 * 1024 * 1024)))
        await client.lost
        response = parse_response(client.data)
        self.assertEqual(response.status, 413)
        self.assertEqual(json.loads(response.body),
                         {"error": "request body larger than 1048576 bytes"})
        self.assertNotIn(b"100 Continue", client.data)
        self.assertEqual(upstream.fake.requests, [])
        self.assertEqual(upstream.site.accepted, 0)
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["bytes_in"]), (413, 0))

    async def test_body_within_the_limit_is_forwarded(self) -> None:
        """A body just under ``maxBodySize`` goes through."""
        upstream, gateway = start_proxy(self, maxBodySize="1MiB")
        agent = tls_agent(self, gateway)
        body = b"x" * (1024 * 1024)
        response, _ = await fetch(agent, "POST", gateway.url + "/local-ollama/api/blobs/sha256:0",
                                  {"Authorization": "Bearer " + gateway.token()},
                                  BytesProducer(body))
        self.assertEqual(response.code, 201)
        self.assertEqual(upstream.fake.requests[0].body, body)

    async def test_chunked_oversized_body_is_refused(self) -> None:
        """A chunked body that grows past ``maxBodySize`` is refused and never fully forwarded."""
        upstream, gateway = start_proxy(self, maxBodySize="1MiB")
        client = await raw_connect(self, gateway)
        client.send(_blob_head(gateway, b"Transfer-Encoding: chunked\r\n"))
        piece = b"y" * (256 * 1024)
        for _ in range(8):
            client.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        client.send(b"0\r\n\r\n")
        await client.lost
        response = parse_response(client.data)
        self.assertEqual(response.status, 413)
        self.assertEqual(json.loads(response.body),
                         {"error": "request body larger than 1048576 bytes"})
        # The part already forwarded is abandoned: the runner's connection is closed.
        await upstream.site.all_closed()
        self.assertEqual(upstream.fake.requests, [])


class SlowUploadTests(TestCase):
    """``firstByteTimeout`` waits for the runner's answer, not for the client's upload."""

    timeout = 10

    async def test_upload_longer_than_first_byte_timeout_completes(self) -> None:
        """An upload that keeps flowing for twice ``firstByteTimeout`` is answered normally."""
        upstream, gateway = start_proxy(self, firstByteTimeout="500ms")
        client = await raw_connect(self, gateway)
        client.send(_blob_head(gateway, b"Transfer-Encoding: chunked\r\n"))
        await _paced_chunks(client, [b"z" * 1024] * 10, interval=0.1)
        await client.lost
        response = parse_response(client.data)
        self.assertEqual(response.status, 201)
        self.assertEqual(upstream.fake.requests[0].body, b"z" * 10 * 1024)

    async def test_runner_silent_after_upload_still_times_out(self) -> None:
        """Once the whole body is in, a runner that says nothing gets 504 after the timeout."""
        upstream, gateway = start_proxy(self, firstByteTimeout="300ms")
        upstream.fake.hang = True
        client = await raw_connect(self, gateway)
        client.send(_blob_head(gateway, b"Content-Length: 4\r\n") + b"data")
        await client.lost
        self.assertEqual(parse_response(client.data).status, 504)
        await upstream.fake.requests[0].disconnected


def _paced_chunks(client: RawClient, pieces: list[bytes], interval: float) -> Deferred[None]:
    """Send ``pieces`` as chunks, one every ``interval`` seconds, then the last chunk."""
    done: Deferred[None] = Deferred()

    def send(index: int) -> None:
        if index == len(pieces):
            client.send(b"0\r\n\r\n")
            done.callback(None)
            return
        client.send(b"%x\r\n%s\r\n" % (len(pieces[index]), pieces[index]))
        reactor.callLater(interval, send, index + 1)

    send(0)
    return done


class ModelAlias:
    """A filter that renames the model of a chat (what role aliases will do)."""

    name = "modelAlias"

    def request_headers(self, exchange: Any) -> None:
        exchange.collect_body(1 << 20)

    def request_body(self, exchange: Any) -> None:
        body = json.loads(exchange.request_body)
        body["model"] = "llama3.2:1b-instruct-q8_0-with-a-long-name"
        exchange.request_body = json.dumps(body).encode()


class RewrittenBodyTests(TestCase):
    """A body a filter rewrote reaches the runner whole, framed by its new length."""

    timeout = 10

    async def test_chunked_body_rewritten_is_sent_with_its_length(self) -> None:
        """A chunked chat whose model a filter renamed arrives as valid JSON with a matching
        Content-Length, and the answer streams back as usual."""
        upstream, gateway = start_proxy(self, filters=[
            "token", "role", "tests.terminals.test_ollama_bodies.ModelAlias", "audit"])
        agent = tls_agent(self, gateway)
        body = json.dumps({"model": "short", "messages": [], "options": {"num_predict": 2}})
        response, answer = await fetch(
            agent, "POST", f"{gateway.url}/local-ollama/api/chat",
            {"Authorization": "Bearer " + gateway.token()},
            BytesProducer(body.encode(), chunked=True))
        self.assertEqual(response.code, 200)
        [seen] = upstream.fake.requests
        self.assertEqual(json.loads(seen.body)["model"],
                         "llama3.2:1b-instruct-q8_0-with-a-long-name")
        self.assertEqual(seen.headers["content-length"], [str(len(seen.body))])
        self.assertNotIn("transfer-encoding", seen.headers)
        self.assertEqual(len([line for line in answer.splitlines() if line]), 3)
