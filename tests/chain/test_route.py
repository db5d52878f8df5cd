"""Matching a request path to a route: longest whole-segment prefix, nothing that escapes it."""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.exchange import Reject
from runnergw.chain.route import (
    Route,
    Router,
    error_body_detail,
    error_body_ollama,
    error_body_openai,
)

__all__ = ["ErrorBodyTests", "MatchTests", "RefusedPathTests"]


def _route(name: str, *prefix: str) -> Route:
    return Route(name, prefix, (), None)


_FALLBACK = _route("")


class MatchTests(SynchronousTestCase):
    """Which route serves a path, and the path sent upstream."""

    def setUp(self) -> None:
        """Routes given shortest first, to show that order does not matter."""
        self.router = Router([_route("root"), _route("a", "a"), _route("ab", "ab"),
                              _route("api", "api"), _route("chat", "api", "chat")], _FALLBACK)

    def match(self, path: str) -> tuple[str, str]:
        """The route name and upstream path for ``path``."""
        route, upstream = self.router.match(path)
        return route.name, upstream

    def test_longest_prefix(self) -> None:
        """The route with the most matching segments wins."""
        self.assertEqual(self.match("/api/chat/x"), ("chat", "/x"))
        self.assertEqual(self.match("/api/chat"), ("chat", "/"))
        self.assertEqual(self.match("/api/tags"), ("api", "/tags"))

    def test_whole_segments_only(self) -> None:
        """``/a`` does not match ``/ab`` nor ``/abc``; ``/api/chatx`` is not ``/api/chat``."""
        self.assertEqual(self.match("/a/x"), ("a", "/x"))
        self.assertEqual(self.match("/ab/x"), ("ab", "/x"))
        self.assertEqual(self.match("/abc"), ("root", "/abc"))
        self.assertEqual(self.match("/api/chatx"), ("api", "/chatx"))

    def test_prefix_stripped(self) -> None:
        """The matched prefix is removed; the rest is kept as sent, percent-escapes included."""
        self.assertEqual(self.match("/api/show/a%20b"), ("api", "/show/a%20b"))
        self.assertEqual(self.match("/api/"), ("api", "/"))
        self.assertEqual(self.match("/api"), ("api", "/"))

    def test_root(self) -> None:
        """The empty prefix serves whatever no other route serves, unchanged."""
        self.assertEqual(self.match("/"), ("root", "/"))
        self.assertEqual(self.match("/v1/models"), ("root", "/v1/models"))

    def test_prefix_compared_decoded(self) -> None:
        """An encoded letter in the prefix still selects the route."""
        self.assertEqual(self.match("/%61pi/tags"), ("api", "/tags"))

    def test_case_sensitive(self) -> None:
        """Prefixes are case-sensitive."""
        self.assertEqual(self.match("/API/tags"), ("root", "/API/tags"))

    def test_dots_inside_names(self) -> None:
        """Segments that merely contain dots are ordinary names."""
        self.assertEqual(self.match("/api/.well-known/..x/..."), ("api", "/.well-known/..x/..."))

    def test_no_route(self) -> None:
        """Without a root route an unknown prefix is 404."""
        router = Router([_route("api", "api")], _FALLBACK)
        error = self.assertRaises(Reject, router.match, "/apix")
        self.assertEqual(error.status, 404)
        self.assertEqual(router.fallback, _FALLBACK)


class RefusedPathTests(SynchronousTestCase):
    """Paths that could reach outside their route's prefix."""

    def setUp(self) -> None:
        """An ``/api`` route and a root route."""
        self.router = Router([_route("api", "api"), _route("root")], _FALLBACK)

    def assertBadPath(self, path: str) -> None:
        """``path`` is refused with 400."""
        error = self.assertRaises(Reject, self.router.match, path)
        self.assertEqual(error.status, 400, f"{path}: {error.message}")

    def test_dot_segments(self) -> None:
        """``.`` and ``..`` segments are refused anywhere."""
        for path in ("/api/../admin", "/api/./tags", "/..", "/.", "/api/x/..", "/api/x/../"):
            with self.subTest(path=path):
                self.assertBadPath(path)

    def test_encoded_dot_segments(self) -> None:
        """Percent-encoded dot segments, in any case and mix, are refused."""
        for path in ("/api/%2e%2e/admin", "/api/%2E%2E/admin", "/api/.%2e/x", "/api/%2e./x",
                     "/api/%2e/x", "/%2e%2e/api"):
            with self.subTest(path=path):
                self.assertBadPath(path)

    def test_dot_segments_with_parameters(self) -> None:
        """``..;``, ``.;x`` and ``..;jsessionid=1`` (dot segments to Java servers) are refused."""
        for path in ("/api/..;/admin", "/api/.;x/tags", "/api/..;jsessionid=1/admin", "/..;",
                     "/api/x/..;", "/api/%2e%2e;/admin", "/api/.%2e;a=b/x", "/api/..%3b/admin"):
            with self.subTest(path=path):
                self.assertBadPath(path)

    def test_semicolons_in_names(self) -> None:
        """A parameter on an ordinary segment, or dots that are not a dot segment, are fine."""
        self.assertEqual(self.router.match("/api/a;b/..x;y/;..")[1], "/a;b/..x;y/;..")

    def test_encoded_slash(self) -> None:
        """``%2f`` is refused, whatever its case."""
        for path in ("/api%2fchat", "/api/a%2Fb", "/api/..%2fadmin"):
            with self.subTest(path=path):
                self.assertBadPath(path)

    def test_backslash(self) -> None:
        """Raw and encoded backslashes are refused."""
        for path in ("/api\\..\\admin", "/api/%5c", "/api/%5C..%5Cadmin"):
            with self.subTest(path=path):
                self.assertBadPath(path)

    def test_nul(self) -> None:
        """An encoded NUL is refused."""
        self.assertBadPath("/api/tags%00.json")

    def test_invalid_utf8(self) -> None:
        """Percent-encoding that is not UTF-8 (lone bytes, overlong forms) is refused."""
        for path in ("/api/%ff", "/api/%c0%ae%c0%ae/x", "/api/%c0%af", "/%e2%82"):
            with self.subTest(path=path):
                self.assertBadPath(path)

    def test_malformed_escape_in_path(self) -> None:
        """A ``%`` not followed by two hex digits in the path is refused."""
        for path in ("/%zz", "/a%2", "/a%", "/api/%g0/x", "/api/tags%", "/%%41", "/api/%2"):
            with self.subTest(path=path):
                self.assertBadPath(path)

    def test_malformed_escape_in_query(self) -> None:
        """A ``%`` not followed by two hex digits in the query string is refused."""
        for query in ("a=%zz", "a=%2", "%", "a=b%", "a=%%20", "x&y=%2g"):
            with self.subTest(query=query):
                error = self.assertRaises(Reject, self.router.match, "/api/tags", query)
                self.assertEqual(error.status, 400, error.message)
                self.assertIn("query", error.message)

    def test_well_formed_query(self) -> None:
        """Escapes in the query are only checked for syntax: any byte may be escaped."""
        self.assertEqual(self.router.match("/api/tags", "a=%20&b=%C3%a9&c=%ff&d=+")[1], "/tags")

    def test_valid_utf8(self) -> None:
        """Well-formed UTF-8 percent-encoding is fine."""
        self.assertEqual(self.router.match("/api/caf%C3%A9")[1], "/caf%C3%A9")


class ErrorBodyTests(SynchronousTestCase):
    """The error shapes a route can answer in."""

    def test_ollama_shape(self) -> None:
        """Ollama clients read ``{"error": …}``."""
        self.assertEqual(json.loads(error_body_ollama(401, 'bad "token"')),
                         {"error": 'bad "token"'})

    def test_detail_shape(self) -> None:
        """FastAPI-style clients read ``{"detail": …}``."""
        self.assertEqual(json.loads(error_body_detail(404, "nope")), {"detail": "nope"})

    def test_openai_shape(self) -> None:
        """OpenAI clients read ``{"error": {"message": …, "type": …}}``, typed as Ollama's
        ``/v1`` types its errors."""
        self.assertEqual(json.loads(error_body_openai(403, "no")), {"error": {
            "message": "no", "type": "api_error", "param": None, "code": None}})
        self.assertEqual(json.loads(error_body_openai(400, "bad"))["error"]["type"],
                         "invalid_request_error")
        self.assertEqual(json.loads(error_body_openai(404, "gone"))["error"]["type"],
                         "not_found_error")

    def test_shape_by_api_path(self) -> None:
        """A route answers some API paths in another shape (an Ollama route's ``/v1/``)."""
        route = Route("ollama", (), (), None, api_error_bodies=(("/v1/", error_body_openai),))
        self.assertIs(route.error_body_for("/v1/chat/completions"), error_body_openai)
        self.assertIs(route.error_body_for("/api/chat"), error_body_ollama)
        self.assertIs(route.error_body_for("/v1"), error_body_ollama)


class ErrorShapeTests(SynchronousTestCase):
    """A path refused before matching is answered in the shape of the route it names."""

    def test_named_route_gives_its_shape(self) -> None:
        """``/text-stats/%zz`` is refused in the pipeline route's shape, not the fallback's."""
        pipeline = Route("text-stats", ("text-stats",), (), None, error_body=error_body_detail)
        runner = Route("ollama", ("ollama",), (), None)
        fallback = Route("", (), (), None)
        router = Router([pipeline, runner], fallback)
        self.assertIs(router.shape_for("/text-stats/%zz"), pipeline)
        self.assertIs(router.shape_for("/ollama/api/..;x"), runner)
        self.assertIs(router.shape_for("/other/%zz"), fallback)
        self.assertIs(router.shape_for("/text%2Dstats/%zz"), pipeline)
