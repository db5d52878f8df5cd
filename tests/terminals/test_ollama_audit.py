"""The audit trail and the logs of proxied requests: complete, one line each, and discreet."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial.unittest import TestCase

from tests.helpers.clients import (
    AuditTap,
    BytesProducer,
    fetch,
    parse_response,
    raw_connect,
    raw_exchange,
    tls_agent,
)
from tests.helpers.ollama_proxy import generate_request, start_proxy

__all__ = ["AuditTrailTests", "LogDiscretionTests"]

_PROMPT = "the quick violet prompt 7f3a"
_FIELDS = {
    "time", "request_id", "client", "subject", "role", "token", "route", "method", "path",
    "model", "status", "bytes_in", "bytes_out", "ttfb_ms", "duration_ms", "upstream", "outcome",
}


class AuditTrailTests(TestCase):
    """Each request leaves exactly one JSON line saying who asked what, and how it went."""

    timeout = 10

    async def test_generate_is_recorded_with_every_field(self) -> None:
        """A completed generation is recorded with caller, model, sizes and timings."""
        upstream, gateway = start_proxy(self)
        audit = AuditTap(self, gateway)
        token = gateway.token(subject="alice", role="admin")
        agent = tls_agent(self, gateway)
        body = json.dumps({"model": "llama3.2:1b", "prompt": _PROMPT, "stream": False}).encode()
        response, answer = await fetch(agent, "POST", gateway.url + "/local-ollama/api/generate",
                                       {"Authorization": "Bearer " + token},
                                       BytesProducer(body))
        self.assertEqual(response.code, 200)
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual(set(record), _FIELDS)
        moment = datetime.fromisoformat(record["time"])
        self.assertLess(abs(datetime.now(timezone.utc) - moment), timedelta(minutes=1))
        [request_id] = response.headers.getRawHeaders(b"x-request-id")
        self.assertEqual(record["request_id"], request_id.decode())
        self.assertEqual(
            {key: record[key] for key in ("client", "subject", "role", "token", "route",
                                          "method", "path", "model", "status", "upstream",
                                          "outcome")},
            {"client": "127.0.0.1", "subject": "alice", "role": "admin", "token": "v4.public",
             "route": "local", "method": "POST", "path": "/local-ollama/api/generate",
             "model": "llama3.2:1b", "status": 200, "upstream": "local", "outcome": "ok"})
        self.assertEqual(record["bytes_in"], len(body))
        self.assertEqual(record["bytes_out"], len(answer))
        self.assertGreaterEqual(record["ttfb_ms"], 0)
        self.assertGreaterEqual(record["duration_ms"], record["ttfb_ms"])
        text = gateway.audit_path.read_text()
        self.assertNotIn(token, text)
        self.assertNotIn(_PROMPT, text)

    async def test_streamed_generation_counts_every_byte(self) -> None:
        """A streamed generation's line counts the bytes of the whole stream."""
        upstream, gateway = start_proxy(self)
        audit = AuditTap(self, gateway)
        client = await raw_connect(self, gateway)
        client.send(generate_request(gateway, prompt=_PROMPT, num_predict=4))
        await client.wait_for_chunked_end()
        response = parse_response(client.data)
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["outcome"], record["model"]),
                         (200, "ok", "llama3.2:1b"))
        self.assertEqual(record["bytes_out"], len(response.body))
        self.assertNotIn(_PROMPT, gateway.audit_path.read_text())

    async def test_denial_is_recorded_with_its_reason(self) -> None:
        """A refused token is recorded as denied, with why, and without the token."""
        upstream, gateway = start_proxy(self)
        audit = AuditTap(self, gateway)
        token = "v4.public.forged-sentinel-value"
        response = await raw_exchange(self, gateway, (
            b"POST /local-ollama/api/generate HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Content-Length: 2\r\nConnection: close\r\n\r\n{}"))
        self.assertEqual(response.status, 401)
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual(set(record), _FIELDS | {"reason"})
        self.assertEqual((record["status"], record["outcome"], record["subject"],
                          record["upstream"], record["route"]),
                         (401, "denied", None, None, "local"))
        self.assertTrue(record["reason"].startswith("token "), record["reason"])
        self.assertNotIn("forged-sentinel-value", gateway.audit_path.read_text())

    async def test_one_line_per_request(self) -> None:
        """Answered, refused, unroutable and malformed requests each leave exactly one line."""
        upstream, gateway = start_proxy(self)
        audit = AuditTap(self, gateway)
        token = gateway.token().encode()
        heads = [
            b"GET /local-ollama/api/tags HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer "
            + token + b"\r\nConnection: close\r\n\r\n",
            b"GET /local-ollama/api/tags HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
            b"GET /nowhere HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
            b"GET /local-ollama/%2e%2e/x HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n",
        ]
        statuses = [(await raw_exchange(self, gateway, head)).status for head in heads]
        self.assertEqual(statuses, [200, 401, 404, 400])
        await audit.written(len(heads))
        records = gateway.audit_records()
        self.assertEqual([record["status"] for record in records], statuses)
        self.assertEqual(len({record["request_id"] for record in records}), len(heads))
        self.assertEqual([record["outcome"] for record in records],
                         ["ok", "denied", "refused", "refused"])


class LogDiscretionTests(TestCase):
    """Log events never carry a bearer token or a prompt, whatever happens to the request."""

    timeout = 10

    async def test_logs_hold_neither_token_nor_prompt(self) -> None:
        """Served, refused, cut and malformed requests log nothing secret."""
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        upstream, gateway = start_proxy(self)
        audit = AuditTap(self, gateway)
        token = gateway.token()
        forged = "v4.public.forged-sentinel-value"
        served = await raw_connect(self, gateway)
        served.send(generate_request(gateway, prompt=_PROMPT))
        await served.wait_for_chunked_end()
        cut = await raw_connect(self, gateway)
        upstream.fake.gated = True
        cut.send(generate_request(gateway, prompt=_PROMPT, num_predict=4, close_after=1))
        await cut.wait_for(b'"t0 "')
        upstream.fake.requests[-1].release()
        await cut.lost
        upstream.fake.gated = False
        refused = await raw_exchange(self, gateway, (
            b"GET /local-ollama/api/tags HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + forged.encode() + b"\r\nConnection: close\r\n\r\n"))
        self.assertEqual(refused.status, 401)
        malformed = await raw_exchange(self, gateway, (
            b"POST /local-ollama/api/generate HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n"
            b"Bad Header: " + _PROMPT.encode() + b"\r\n\r\n"))
        self.assertEqual(malformed.status, 400)
        await audit.written(3)
        self.assertGreater(len(events), 0)
        texts = [formatEvent(event) + repr(event) for event in events]
        self.assertTrue(any("400" in text for text in texts), "the refusal was not logged")
        for text in texts:
            for secret in (token, "forged-sentinel-value", _PROMPT):
                self.assertNotIn(secret, text)
