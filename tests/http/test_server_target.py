"""Request targets the chain refuses before a runner sees them, answered in the error shape."""

from __future__ import annotations

from typing import Any

from runnergw.chain.route import Route, Router, error_body_detail
from runnergw.chain.runner import ChainRunner
from tests.http.support import Response, ServerTestCase, StubTerminal, parse_responses

__all__ = ["TargetTests"]


class TargetTests(ServerTestCase):
    """A real chain, whose routes answer errors as ``{"detail": …}``, over an echoing runner."""

    def setUp(self) -> None:
        """One ``/api`` route; the fallback answers every other path."""
        super().setUp()
        self.terminal = StubTerminal(echo=True)
        route = Route("api", ("api",), (), self.terminal, error_body=error_body_detail)
        fallback = Route("", (), (), None, error_body=error_body_detail)
        self.gateway = ChainRunner(Router([route], fallback))

    def get(self, target: bytes) -> Response:
        """Send ``GET target``; the one response, which leaves the connection open."""
        _, transport = self.request(b"GET " + target + b" HTTP/1.1\r\nHost: gw\r\n\r\n")
        [response] = parse_responses(transport.value())
        self.assertOpen(transport)
        return response

    def refused(self, target: bytes) -> Any:
        """Send ``GET target``; it must be a 400; the JSON error body."""
        response = self.get(target)
        self.assertEqual(response.status, 400)
        return response.json()

    def test_served(self) -> None:
        """A well-formed target with escapes in its path and query reaches the runner."""
        self.assertEqual(self.get(b"/api/show/a%20b?x=%C3%A9").status, 200)
        self.assertEqual(self.terminal.calls[0].exchange.upstream_path, "/show/a%20b")

    def test_malformed_escape_in_path(self) -> None:
        """``/api/%zz`` and ``/api/a%2`` are a 400 in the route's shape, not the runner's."""
        for target in (b"/api/%zz", b"/api/a%2", b"/api/tags%"):
            with self.subTest(target=target):
                self.assertEqual(list(self.refused(target)), ["detail"])
        self.assertEqual(self.terminal.calls, [])

    def test_malformed_escape_in_query(self) -> None:
        """``/api/tags?a=%zz`` is a 400 in the route's shape, not the runner's."""
        for target in (b"/api/tags?a=%zz", b"/api/tags?a=%2", b"/api/tags?%"):
            with self.subTest(target=target):
                self.assertEqual(list(self.refused(target)), ["detail"])
        self.assertEqual(self.terminal.calls, [])

    def test_dot_segment_with_parameter(self) -> None:
        """``/api/..;/admin`` is a 400 in the route's shape, never forwarded."""
        self.assertEqual(list(self.refused(b"/api/..;/admin")), ["detail"])
        self.assertEqual(self.terminal.calls, [])
