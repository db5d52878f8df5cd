"""Routes, and matching a request path to the route with the longest prefix."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from urllib.parse import unquote

import attrs

from runnergw.chain.exchange import Reject
from runnergw.chain.hooks import ChainHooks
from runnergw.chain.inflight import InFlight
from runnergw.chain.interfaces import IFilter, ITerminal
from runnergw.chain.timing import ServerTiming
from runnergw.http.interfaces import StreamPolicy, error_body_json

__all__ = ["Route", "Router", "error_body_detail", "error_body_ollama", "error_body_openai"]


error_body_ollama = error_body_json
"""Ollama's error shape, ``{"error": "…"}``, which its clients parse: the HTTP server's own."""


def error_body_detail(status: int, message: str) -> bytes:
    """FastAPI's error shape, ``{"detail": "…"}``."""
    return json.dumps({"detail": message}).encode()


def _openai_error_type(status: int) -> str:
    if status == 400:
        return "invalid_request_error"
    if status == 404:
        return "not_found_error"
    return "api_error"


def error_body_openai(status: int, message: str) -> bytes:
    """The OpenAI API's error shape, ``{"error": {"message": "…", "type": …}}``, which
    Ollama's ``/v1`` endpoints answer and OpenAI clients show."""
    return json.dumps({"error": {"message": message, "type": _openai_error_type(status),
                                 "param": None, "code": None}}).encode()


@attrs.frozen
class Route:
    """A path prefix with its filter chain and terminal."""

    name: str
    prefix: tuple[str, ...]
    """Decoded prefix segments (empty for ``/``)."""
    filters: tuple[IFilter, ...]
    terminal: ITerminal | None
    """None for the fallback route that only answers 404."""
    error_body: Callable[[int, str], bytes] = error_body_ollama
    max_body_size: int = 1 << 30
    api_error_bodies: tuple[tuple[str, Callable[[int, str], bytes]], ...] = ()
    """Decoded API path prefixes answered in another error shape than ``error_body`` (on
    an Ollama route, ``/v1/`` in OpenAI's)."""
    server_timing: ServerTiming | None = None
    """Adds ``Server-Timing`` to every response head of the route (None: no header)."""
    policy: StreamPolicy = attrs.field(
        init=False, eq=False, repr=False,
        default=attrs.Factory(lambda route: StreamPolicy(route.max_body_size, route.error_body),
                              takes_self=True))
    """What the HTTP server is told of this route (body limit, error shape)."""
    hooks: ChainHooks = attrs.field(
        init=False, eq=False, repr=False,
        default=attrs.Factory(lambda route: ChainHooks.of(route.filters), takes_self=True))
    """The filters by hook, found once (a filter class with a misspelt hook is refused)."""

    def error_body_for(self, api_path: str) -> Callable[[int, str], bytes]:
        """The error shape of a request to ``api_path`` (the path after the prefix)."""
        for prefix, error_body in self.api_error_bodies:
            if api_path.startswith(prefix):
                return error_body
        return self.error_body


_BAD_ESCAPE = re.compile(r"%(?![0-9A-Fa-f]{2})")
"""A ``%`` not followed by two hex digits: each server would make its own guess at it."""


def _split_path(path: str) -> tuple[list[str], list[str]]:
    """Raw and decoded segments; refuses dot segments and encoded separators anywhere."""
    escaped = "%" in path
    if escaped:
        if _BAD_ESCAPE.search(path):
            raise Reject(400, "malformed percent-escape in the path")
        lowered = path.lower()
        if "%2f" in lowered or "%5c" in lowered or "%00" in lowered:
            raise Reject(400, "encoded slashes, backslashes and NUL are not allowed in the path")
    if "\\" in path:
        raise Reject(400, "encoded slashes, backslashes and NUL are not allowed in the path")
    raw = path.split("/")[1:]
    decoded = [unquote(segment, errors="strict") if "%" in segment else segment
               for segment in raw] if escaped else raw
    # Java servers drop path parameters before resolving dot segments: ``..;x`` is ``..``.
    if (escaped or "." in path) and any(
            segment.partition(";")[0] in (".", "..") for segment in decoded):
        raise Reject(400, "dot segments are not allowed in the path")
    return raw, decoded


class Router:
    """Finds the route for a path: the longest prefix matched on whole segments."""

    def __init__(self, routes: Sequence[Route], fallback: Route) -> None:
        self.routes = sorted(routes, key=lambda r: len(r.prefix), reverse=True)
        self.fallback = fallback
        self.inflight = InFlight()
        """The exchanges that began on this router (a reload retires it once they end)."""

    def match(self, path: str, query: str = "") -> tuple[Route, str]:
        """Return the route and the path to forward (prefix stripped).

        Args:
            path: the raw request path.
            query: the raw query string (without ``?``), checked for malformed escapes only.

        Raises:
            Reject: 400 for a path that could escape its prefix or a malformed
                percent-escape, 404 when no prefix matches.
        """
        if "%" in query and _BAD_ESCAPE.search(query):
            raise Reject(400, "malformed percent-escape in the query string")
        try:
            raw, decoded = _split_path(path)
        except UnicodeDecodeError:
            raise Reject(400, "the path is not valid percent-encoded UTF-8") from None
        for route in self.routes:
            size = len(route.prefix)
            if tuple(decoded[:size]) == route.prefix:
                return route, "/" + "/".join(raw[size:])
        raise Reject(404, "no runner serves this path")

    def shape_for(self, path: str) -> Route:
        """The route whose error shape answers a path refused before it could be matched: the
        one its leading segments name (decoded leniently), else the fallback."""
        segments = [unquote(segment, errors="replace") for segment in path.split("/")[1:]]
        for route in self.routes:
            size = len(route.prefix)
            if tuple(segments[:size]) == route.prefix:
                return route
        return self.fallback
