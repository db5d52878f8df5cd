"""The Ollama proxy terminal when a side leaves or goes quiet: disconnects, failures, timeouts."""

from __future__ import annotations

import json
from typing import Any

from twisted.internet import reactor
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from runnergw.logs import level_gate
from tests.helpers.clients import (
    AuditTap,
    fetch,
    parse_response,
    raw_connect,
    tls_agent,
    unused_port,
)
from tests.helpers.gateway import start_gateway
from tests.helpers.ollama_proxy import generate_request, start_proxy

__all__ = ["ClientDisconnectTests", "InvalidResponseTests", "TimeoutTests",
           "UpstreamFailureTests"]


class ClientDisconnectTests(TestCase):
    """A client that leaves stops the generation on the runner at once."""

    timeout = 10

    async def test_leaving_mid_stream_closes_the_upstream_request(self) -> None:
        """Closing mid-generation stops the runner at once, not when its next chunk comes."""
        upstream, gateway = start_proxy(self)
        upstream.fake.gated = True
        audit = AuditTap(self, gateway)
        client = await raw_connect(self, gateway)
        client.send(generate_request(gateway, num_predict=5))
        await client.wait_for(b'"t0 "')
        [seen] = upstream.fake.requests
        self.assertTrue(seen.holding)
        await client.close()
        await seen.disconnected
        self.assertTrue(seen.holding, "the runner was never asked for another chunk")
        self.assertEqual(seen.pieces_sent, 1)
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual(record["outcome"], "client_gone")
        self.assertEqual(record["status"], 200)

    async def test_leaving_before_the_runner_answers_closes_the_upstream_request(self) -> None:
        """Closing the connection while the model is still loading cancels the runner's request."""
        upstream, gateway = start_proxy(self)
        upstream.fake.hang = True
        audit = AuditTap(self, gateway)
        client = await raw_connect(self, gateway)
        arrived = upstream.fake.next_request()
        client.send(generate_request(gateway))
        seen = await arrived
        await client.close()
        await seen.disconnected
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual(record["outcome"], "client_gone")
        self.assertEqual(client.data, b"")

    async def test_upstream_connection_is_not_reused_after_a_client_left(self) -> None:
        """After a client walked away mid-stream, the next request is served normally."""
        upstream, gateway = start_proxy(self)
        upstream.fake.gated = True
        first = await raw_connect(self, gateway)
        first.send(generate_request(gateway, num_predict=5))
        await first.wait_for(b'"t0 "')
        await first.close()
        await upstream.fake.requests[0].disconnected
        upstream.fake.gated = False
        agent = tls_agent(self, gateway)
        response, body = await fetch(agent, "GET", gateway.url + "/local-ollama/api/tags",
                                     {"Authorization": "Bearer " + gateway.token()})
        self.assertEqual(response.code, 200)
        self.assertIn(b"llama3.2:1b", body)
        self.assertEqual(upstream.site.accepted, 2)


class UpstreamFailureTests(TestCase):
    """Runner failures become clear Ollama-shaped errors, or a visibly cut stream."""

    timeout = 10

    async def test_refused_connection_is_a_502(self) -> None:
        """A runner that is not listening gives 502 with an ``{"error"}`` body."""
        port = await unused_port()
        gateway = start_gateway(self, [{"name": "local", "path": "/local-ollama",
                                        "host": f"127.0.0.1:{port}"}])
        audit = AuditTap(self, gateway)
        agent = tls_agent(self, gateway)
        response, body = await fetch(agent, "GET", gateway.url + "/local-ollama/api/tags",
                                     {"Authorization": "Bearer " + gateway.token()})
        self.assertEqual(response.code, 502)
        self.assertEqual(json.loads(body), {"error": "runner local is unreachable"})
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["outcome"]), (502, "upstream_error"))

    async def test_runner_that_never_answers_is_a_504(self) -> None:
        """A runner silent past ``firstByteTimeout`` gives 504, and its request is closed."""
        upstream, gateway = start_proxy(self, firstByteTimeout="300ms")
        upstream.fake.hang = True
        audit = AuditTap(self, gateway)
        agent = tls_agent(self, gateway)
        response, body = await fetch(agent, "GET", gateway.url + "/local-ollama/api/tags",
                                     {"Authorization": "Bearer " + gateway.token()})
        self.assertEqual(response.code, 504)
        self.assertEqual(json.loads(body), {"error": "runner local did not answer in time"})
        await upstream.fake.requests[0].disconnected
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["outcome"]), (504, "timeout"))
        self.assertGreaterEqual(record["duration_ms"], 300)

    async def test_runner_closing_before_answering_is_a_502(self) -> None:
        """A runner that drops the connection before any answer gives 502 with ``{"error"}``."""
        upstream, gateway = start_proxy(self)
        audit = AuditTap(self, gateway)
        client = await raw_connect(self, gateway)
        client.send(generate_request(gateway, close_after=0))
        response = parse_response(await client.wait_for(b"}"))
        self.assertEqual(response.status, 502)
        self.assertEqual(json.loads(response.body),
                         {"error": "runner local closed the connection"})
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["outcome"]), (502, "upstream_error"))

    async def test_runner_closing_mid_stream_cuts_the_response(self) -> None:
        """A runner dying mid-generation leaves the client an unterminated chunked body."""
        upstream, gateway = start_proxy(self)
        upstream.fake.gated = True
        audit = AuditTap(self, gateway)
        client = await raw_connect(self, gateway)
        client.send(generate_request(gateway, num_predict=5, close_after=2))
        await client.wait_for(b'"t0 "')
        [seen] = upstream.fake.requests
        seen.release()
        await client.wait_for(b'"t1 "')
        seen.release()
        await client.lost
        response = parse_response(client.data)
        self.assertEqual(response.status, 200)
        self.assertFalse(response.complete)
        self.assertEqual([json.loads(line)["response"] for line in response.body.splitlines()],
                         ["t0 ", "t1 "])
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["outcome"]), (200, "upstream_error"))


class TimeoutTests(TestCase):
    """Timeouts measure silence, never the length of a generation."""

    timeout = 10

    async def test_long_generation_outlives_read_and_write_timeouts(self) -> None:
        """A generation that keeps talking runs past the server's 0.5 s read and write timeouts."""
        upstream, gateway = start_proxy(
            self, server={"readTimeoutSeconds": "500ms", "writeTimeoutSeconds": "500ms"})
        audit = AuditTap(self, gateway)
        client = await raw_connect(self, gateway)
        client.send(generate_request(gateway, num_predict=5, delay=0.2))
        await client.wait_for_chunked_end()
        response = parse_response(client.data)
        self.assertTrue(response.complete)
        lines = [json.loads(line) for line in response.body.splitlines()]
        self.assertEqual([line["done"] for line in lines], [False] * 5 + [True])
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual(record["outcome"], "ok")
        self.assertGreater(record["duration_ms"], 1000)

    async def test_silent_stream_is_cut_after_idle_timeout(self) -> None:
        """A runner silent mid-stream for longer than ``idleTimeout`` is cut off at both ends."""
        upstream, gateway = start_proxy(self, idleTimeout="300ms")
        upstream.fake.gated = True
        audit = AuditTap(self, gateway)
        client = await raw_connect(self, gateway)
        client.send(generate_request(gateway, num_predict=5))
        await client.wait_for(b'"t0 "')
        [seen] = upstream.fake.requests
        await seen.disconnected
        await client.lost
        self.assertEqual(seen.pieces_sent, 1)
        self.assertFalse(parse_response(client.data).complete)
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual(record["outcome"], "timeout")
        self.assertGreaterEqual(record["duration_ms"], 300)


class _CannedRunner(Protocol):
    """Answers the first request head with fixed bytes, whatever was asked."""

    def __init__(self, answer: bytes) -> None:
        self.answer = answer
        self.received = b""

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        if b"\r\n\r\n" in self.received and self.answer:
            answer, self.answer = self.answer, b""
            self.transport.write(answer)


def start_canned_runner(testcase: TestCase, answer: bytes) -> int:
    """A runner on 127.0.0.1 that sends ``answer`` to every request; returns its port."""
    factory = Factory.forProtocol(lambda: _CannedRunner(answer))
    factory.noisy = False
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return port.getHost().port


class InvalidResponseTests(TestCase):
    """A runner that answers malformed HTTP gives the client a clean 502, never its bytes."""

    timeout = 10

    async def ask(self, answer: bytes) -> tuple[Any, Any, AuditTap]:
        """Ask the canned runner for its model list through the gateway, and wait until the
        connection closes; the client, the gateway and its audit tap."""
        port = start_canned_runner(self, answer)
        gateway = start_gateway(self, [{"name": "local", "path": "/local-ollama",
                                        "host": f"127.0.0.1:{port}"}])
        audit = AuditTap(self, gateway)
        client = await raw_connect(self, gateway)
        client.send(b"GET /local-ollama/api/tags HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
                    + gateway.token().encode() + b"\r\nConnection: close\r\n\r\n")
        await client.lost
        return client, gateway, audit

    async def refused(self, answer: bytes) -> tuple[bytes, list[str]]:
        """Ask the canned runner through the gateway; the client's bytes and the warnings."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.patch(level_gate, "level", LogLevel.info)
        client, gateway, audit = await self.ask(answer)
        response = parse_response(client.data)
        self.assertEqual(response.status, 502)
        self.assertEqual(json.loads(response.body),
                         {"error": "runner local sent an invalid response"})
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["outcome"]), (502, "upstream_error"))
        self.assertEqual([event for event in events if "log_failure" in event], [])
        warnings = [formatEvent(event) for event in events
                    if event["log_level"] >= LogLevel.warn]
        return client.data, warnings

    async def test_non_ascii_content_length_is_a_502(self) -> None:
        """A Content-Length of "\xb2" (a digit to ``str.isdigit``) is a 502, not a traceback."""
        _, warnings = await self.refused(
            b"HTTP/1.1 200 OK\r\nContent-Length: \xb2\r\n\r\nhello")
        [warning] = warnings
        self.assertIn("sent an invalid response: malformed Content-Length", warning)

    async def test_header_with_bare_lf_is_a_502(self) -> None:
        """A header value hiding a line break never splits the client's response."""
        sent, warnings = await self.refused(
            b"HTTP/1.1 200 OK\r\nX-Note: s3cr3t\nSet-Cookie: injected=1\r\n"
            b"Content-Length: 2\r\n\r\n{}")
        self.assertNotIn(b"injected", sent)
        [warning] = warnings
        self.assertIn("control character in the value of header X-Note", warning)
        self.assertNotIn("s3cr3t", warning)

    async def test_garbled_chunk_mid_stream_is_audited_as_such(self) -> None:
        """A runner whose chunked body turns to garbage after the head cuts the client's
        answer, and the audit says it was an invalid response, not a closed connection."""
        client, gateway, audit = await self.ask(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n3\r\n{}\n\r\nzz\r\n")
        self.assertFalse(client.data.endswith(b"0\r\n\r\n"), "the cut answer looks whole")
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual(record["outcome"], "upstream_error")
        self.assertIn("upstream protocol error mid-response: malformed chunked body",
                      record["reason"])
