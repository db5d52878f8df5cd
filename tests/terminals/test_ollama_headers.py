"""Which headers cross the Ollama proxy terminal, in each direction."""

from __future__ import annotations

import re

from twisted.trial.unittest import TestCase

from tests.helpers.clients import AuditTap, raw_exchange
from tests.helpers.ollama_proxy import start_proxy

__all__ = ["RequestHeaderTests", "RequestIdTests", "ResponseHeaderTests"]


def _tags_request(token: str, extra: bytes = b"", host: bytes = b"gw.example:8443") -> bytes:
    return (b"GET /local-ollama/api/tags HTTP/1.1\r\nHost: " + host + b"\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\n" + extra +
            b"Connection: close\r\n\r\n")


class RequestHeaderTests(TestCase):
    """The runner gets the client's request, never its credentials or connection details."""

    timeout = 10

    async def test_credentials_never_reach_the_runner(self) -> None:
        """Bearer token, user token, cookies and proxy credentials stay at the gateway."""
        upstream, gateway = start_proxy(self)
        token = gateway.token()
        response = await raw_exchange(self, gateway, _tags_request(token, (
            b"X-User-Token: user-secret\r\n"
            b"Cookie: session=cookie-secret\r\n"
            b"Proxy-Authorization: Basic cHJveHk6c2VjcmV0\r\n"
            b"X-Client-Note: kept\r\n")))
        self.assertEqual(response.status, 200)
        [seen] = upstream.fake.requests
        for name in ("authorization", "x-user-token", "cookie", "proxy-authorization"):
            self.assertNotIn(name, seen.headers)
        self.assertEqual(seen.headers["x-client-note"], ["kept"])
        everything = repr(seen.headers)
        for secret in (token, "user-secret", "cookie-secret", "cHJveHk6c2VjcmV0"):
            self.assertNotIn(secret, everything)

    async def test_connection_headers_never_reach_the_runner(self) -> None:
        """Headers the client names in ``Connection`` and other hop-by-hop ones are dropped."""
        upstream, gateway = start_proxy(self)
        response = await raw_exchange(self, gateway, (
            b"GET /local-ollama/api/tags HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + gateway.token().encode() + b"\r\n"
            b"Connection: close, X-Secret-Hop\r\n"
            b"X-Secret-Hop: hop-value\r\n"
            b"Keep-Alive: timeout=5\r\n"
            b"TE: trailers\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Upgrade: websocket\r\n\r\n"))
        self.assertEqual(response.status, 200)
        [seen] = upstream.fake.requests
        self.assertNotIn("x-secret-hop", seen.headers)
        self.assertNotIn("hop-value", repr(seen.headers))
        for name in ("keep-alive", "te", "proxy-connection", "upgrade"):
            self.assertNotIn(name, seen.headers)
        self.assertNotIn("close", seen.headers.get("connection", []))

    async def test_forwarding_headers_are_set_by_the_gateway(self) -> None:
        """``X-Forwarded-*`` give the runner the real client, scheme and host; forgeries go."""
        upstream, gateway = start_proxy(self)
        await raw_exchange(self, gateway, _tags_request(gateway.token(), (
            b"X-Forwarded-For: 203.0.113.9\r\n"
            b"X-Forwarded-Proto: http\r\n"
            b"X-Forwarded-Host: evil.example\r\n"
            b"X-Real-IP: 203.0.113.9\r\n"
            b"Forwarded: for=203.0.113.9\r\n")))
        [seen] = upstream.fake.requests
        self.assertEqual(seen.headers["x-forwarded-for"], ["127.0.0.1"])
        self.assertEqual(seen.headers["x-forwarded-proto"], ["https"])
        self.assertEqual(seen.headers["x-forwarded-host"], ["gw.example:8443"])
        self.assertNotIn("x-real-ip", seen.headers)
        self.assertNotIn("forwarded", seen.headers)
        self.assertEqual(seen.headers["host"], [f"127.0.0.1:{upstream.port}"])


class RequestIdTests(TestCase):
    """Every request carries one id, shared by the client, the runner and the audit trail."""

    timeout = 10

    async def test_valid_client_request_id_is_kept(self) -> None:
        """A well-formed ``X-Request-Id`` from the client goes to the runner and comes back."""
        upstream, gateway = start_proxy(self)
        audit = AuditTap(self, gateway)
        response = await raw_exchange(self, gateway, _tags_request(
            gateway.token(), b"X-Request-Id: trace-42.a:b_c\r\n"))
        self.assertEqual(response.header("x-request-id"), "trace-42.a:b_c")
        [seen] = upstream.fake.requests
        self.assertEqual(seen.headers["x-request-id"], ["trace-42.a:b_c"])
        await audit.written()
        self.assertEqual(gateway.audit_records()[0]["request_id"], "trace-42.a:b_c")

    async def test_invalid_client_request_id_is_replaced(self) -> None:
        """A malformed ``X-Request-Id`` is replaced by a fresh one, the same on both sides."""
        upstream, gateway = start_proxy(self)
        response = await raw_exchange(self, gateway, _tags_request(
            gateway.token(), b"X-Request-Id: bad id/<script>\r\n"))
        returned = response.header("x-request-id")
        assert returned is not None
        self.assertRegex(returned, re.compile(r"\A[0-9a-f]{32}\Z"))
        [seen] = upstream.fake.requests
        self.assertEqual(seen.headers["x-request-id"], [returned])

    async def test_request_id_is_made_when_missing(self) -> None:
        """Without ``X-Request-Id`` the gateway makes one and sends it both ways."""
        upstream, gateway = start_proxy(self)
        response = await raw_exchange(self, gateway, _tags_request(gateway.token()))
        returned = response.header("x-request-id")
        assert returned is not None
        self.assertRegex(returned, re.compile(r"\A[0-9a-f]{32}\Z"))
        self.assertEqual(upstream.fake.requests[0].headers["x-request-id"], [returned])


class ResponseHeaderTests(TestCase):
    """The client gets the runner's answer without the runner's connection details."""

    timeout = 10

    async def test_hop_by_hop_response_headers_are_not_returned(self) -> None:
        """The runner's hop-by-hop headers (``Keep-Alive``, ``Upgrade``…) never reach the client."""
        upstream, gateway = start_proxy(self)
        upstream.fake.response_headers = [
            (b"Keep-Alive", b"timeout=5"),
            (b"Proxy-Authenticate", b'Basic realm="runner"'),
            (b"Trailer", b"X-Checksum"),
            (b"Upgrade", b"h2c"),
            (b"Proxy-Connection", b"keep-alive"),
            (b"X-Runner-Note", b"kept"),
        ]
        response = await raw_exchange(self, gateway, _tags_request(gateway.token()))
        self.assertEqual(response.status, 200)
        self.assertTrue(response.complete)
        for name in ("keep-alive", "proxy-authenticate", "trailer", "upgrade",
                     "proxy-connection"):
            self.assertNotIn(name, response.names)
        self.assertEqual(response.header("x-runner-note"), "kept")
        self.assertEqual(response.header("connection"), "close")

    async def test_headers_named_in_runner_connection_are_not_returned(self) -> None:
        """A header the runner lists in its ``Connection`` header is not passed to the client."""
        upstream, gateway = start_proxy(self)
        upstream.fake.response_headers = [
            (b"Connection", b"X-Runner-Hop"),
            (b"X-Runner-Hop", b"hop-value"),
            (b"X-Runner-Note", b"kept"),
        ]
        response = await raw_exchange(self, gateway, _tags_request(gateway.token()))
        self.assertEqual(response.status, 200)
        self.assertEqual(response.header("x-runner-note"), "kept")
        self.assertNotIn("x-runner-hop", response.names)
        self.assertEqual(response.header("connection"), "close")
