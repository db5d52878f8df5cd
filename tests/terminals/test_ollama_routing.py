"""Which runner a request reaches, and which requests reach none: prefixes and bearer tokens."""

from __future__ import annotations

import json
from collections.abc import Callable

from twisted.trial.unittest import TestCase

from tests.helpers.clients import AuditTap, fetch, raw_exchange, tls_agent
from tests.helpers.gateway import RunningGateway, start_gateway
from tests.helpers.ollama_proxy import (
    FakeRunner,
    expired_token,
    foreign_token,
    start_fake,
    start_proxy,
)

__all__ = ["PrefixTests", "TokenTests"]


def _get(target: bytes, token: str) -> bytes:
    return (b"GET " + target + b" HTTP/1.1\r\nHost: gw\r\n"
            b"Authorization: Bearer " + token.encode() + b"\r\nConnection: close\r\n\r\n")


class PrefixTests(TestCase):
    """The longest whole-segment prefix picks the runner; nothing escapes its prefix."""

    timeout = 10

    def _three_runners(self) -> tuple[dict[str, FakeRunner], RunningGateway]:
        fakes = {path: start_fake(self) for path in ("/", "/a", "/a/b")}
        gateway = start_gateway(self, [
            fake.runner(path, name=f"runner{index}")
            for index, (path, fake) in enumerate(fakes.items())
        ])
        return fakes, gateway

    async def test_longest_prefix_wins(self) -> None:
        """``/a/b/…`` goes to the ``/a/b`` runner, ``/a/…`` to ``/a``, the rest to ``/``."""
        fakes, gateway = self._three_runners()
        agent = tls_agent(self, gateway)
        headers = {"Authorization": "Bearer " + gateway.token()}
        expected = {
            "/api/tags": ("/", "/api/tags"),
            "/a/b/api/tags": ("/a/b", "/api/tags"),
            "/a/api/tags": ("/a", "/api/tags"),
            "/a/bc/api/tags": ("/a", "/bc/api/tags"),
            "/ab/api/tags": ("/", "/ab/api/tags"),
            "/a/b": ("/a/b", "/"),
        }
        for target, (prefix, forwarded) in expected.items():
            before = {path: len(fake.fake.requests) for path, fake in fakes.items()}
            response, _ = await fetch(agent, "GET", gateway.url + target, headers)
            self.assertIn(response.code, (200, 404), target)
            reached = [path for path, fake in fakes.items()
                       if len(fake.fake.requests) > before[path]]
            self.assertEqual(reached, [prefix], target)
            self.assertEqual(fakes[prefix].fake.requests[-1].path, forwarded, target)

    async def test_query_string_is_forwarded(self) -> None:
        """The query string travels to the runner with the stripped path."""
        upstream, gateway = start_proxy(self)
        await raw_exchange(self, gateway,
                           _get(b"/local-ollama/api/tags?verbose=1&x=%20y", gateway.token()))
        self.assertEqual(upstream.fake.requests[0].path, "/api/tags?verbose=1&x=%20y")

    async def test_prefix_matches_whole_segments_only(self) -> None:
        """``/ollamaX/…`` is not served by the ``/ollama`` runner: 404 in Ollama's error shape."""
        upstream, gateway = start_proxy(self, "/ollama")
        response = await raw_exchange(self, gateway, _get(b"/ollamaX/api/tags", gateway.token()))
        self.assertEqual(response.status, 404)
        self.assertEqual(json.loads(response.body), {"error": "no runner serves this path"})
        self.assertEqual(upstream.fake.requests, [])

    async def test_unknown_path_without_root_runner_is_404(self) -> None:
        """A path under no runner's prefix gets 404 ``{"error"}`` JSON, even without a token."""
        upstream, gateway = start_proxy(self, "/ollama")
        audit = AuditTap(self, gateway)
        response = await raw_exchange(self, gateway, (
            b"GET /elsewhere/api/tags HTTP/1.1\r\nHost: gw\r\nConnection: close\r\n\r\n"))
        self.assertEqual(response.status, 404)
        self.assertEqual(response.header("content-type"), "application/json; charset=utf-8")
        self.assertEqual(json.loads(response.body), {"error": "no runner serves this path"})
        self.assertEqual(upstream.fake.requests, [])
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["route"], record["outcome"]),
                         (404, None, "refused"))

    async def test_dot_segments_are_refused(self) -> None:
        """Paths that climb out of a prefix, plainly or percent-encoded, get 400 and go nowhere."""
        upstream, gateway = start_proxy(self, "/ollama")
        token = gateway.token()
        for target in (b"/ollama/../x", b"/ollama/%2e%2e/x", b"/ollama/%2E%2E/x",
                       b"/ollama/..%2fx", b"/ollama/..%2Fapi/tags", b"/ollama/./api/tags",
                       b"/ollama/api/..", b"/ollama/%2e/api/tags", b"/ollama/..%5cx"):
            response = await raw_exchange(self, gateway, _get(target, token))
            self.assertEqual(response.status, 400, target)
            self.assertIn("error", json.loads(response.body), target)
        self.assertEqual(upstream.fake.requests, [])
        self.assertEqual(upstream.site.accepted, 0)


class TokenTests(TestCase):
    """Without a valid bearer token, nothing reaches the runner and nothing leaks back."""

    timeout = 10

    async def _refused(self, authorization: Callable[[RunningGateway], str | None]) -> None:
        """Send ``/api/tags`` with ``authorization(gateway)`` and check the 401 the client gets."""
        upstream, gateway = start_proxy(self)
        audit = AuditTap(self, gateway)
        agent = tls_agent(self, gateway)
        sent = authorization(gateway)
        headers = {} if sent is None else {"Authorization": sent}
        response, body = await fetch(agent, "GET", gateway.url + "/local-ollama/api/tags",
                                     headers)
        self.assertEqual(response.code, 401)
        [challenge] = response.headers.getRawHeaders(b"www-authenticate")
        self.assertTrue(challenge.startswith(b"Bearer "), challenge)
        self.assertEqual(list(json.loads(body)), ["error"])
        if sent is not None:
            credential = sent.split(" ", 1)[1].encode()
            self.assertNotIn(credential, body)
            self.assertNotIn(credential, challenge)
        self.assertEqual(upstream.fake.requests, [])
        self.assertEqual(upstream.site.accepted, 0)
        await audit.written()
        [record] = gateway.audit_records()
        self.assertEqual((record["status"], record["outcome"]), (401, "denied"))
        self.assertIsNone(record["upstream"])
        self.assertTrue(record["reason"].startswith("token "), record["reason"])

    async def test_missing_token(self) -> None:
        """No ``Authorization`` header: 401 with a Bearer challenge."""
        await self._refused(lambda gateway: None)

    async def test_expired_token(self) -> None:
        """An expired token: 401, and the token is not echoed."""
        await self._refused(lambda gateway: "Bearer " + expired_token(gateway))

    async def test_garbage_token(self) -> None:
        """A token that is not PASETO: 401, and the token is not echoed."""
        await self._refused(lambda gateway: "Bearer v4.public.garbage-sentinel-token")

    async def test_token_signed_by_another_key(self) -> None:
        """A token signed with an unknown key: 401, and the token is not echoed."""
        token = foreign_token(self)
        await self._refused(lambda gateway: "Bearer " + token)

    async def test_other_authorization_scheme(self) -> None:
        """Basic credentials instead of a bearer token: 401, credentials not echoed."""
        await self._refused(lambda gateway: "Basic dXNlcjpwYXNzd29yZA==")
