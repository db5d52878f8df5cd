"""A gateway with a ``roles`` section in front of a fake Ollama holding a few models, and raw
HTTPS calls to it, for the end-to-end tests of roles, limits, quotas and usage."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Awaitable, Callable
from typing import Any

from twisted.trial.unittest import TestCase

from runnergw.cli import main
from tests.helpers.clients import RawClient, RawResponse, raw_connect, raw_exchange
from tests.helpers.gateway import RunningGateway
from tests.helpers.ollama_proxy import FakeRunner, start_proxy

__all__ = [
    "MODELS",
    "PREFIX",
    "USER_MODELS",
    "call",
    "go_reads",
    "policy_roles",
    "spend_after_first_token",
    "start_policy_proxy",
    "stream_request",
    "usage_report",
]

PREFIX = "/local-ollama"
"""Where the fake Ollama is served on the gateway."""

MODELS = ["llama3.2:1b", "llama3.2:3b", "qwen2.5:7b", "nomic-embed-text:latest"]
"""The models the fake Ollama has."""

USER_MODELS = ["llama3.2:1b", "llama3.2:3b", "nomic-embed-text:latest"]
"""Those the ``user`` role of :func:`policy_roles` may use."""


def policy_roles(**user: Any) -> dict[str, Any]:
    """A ``roles`` section: ``user`` (llama3.2 and the embedding model, inference and
    catalogue, with the rules given) and ``admin`` (every model, management too)."""
    return {
        "user": {"models": ["llama3.2:*", "nomic-embed-text"], **user},
        "admin": {"models": ["*"], "api": ["inference", "catalogue", "management"]},
    }


def start_policy_proxy(testcase: TestCase, roles: dict[str, Any] | None = None,
                       policy: dict[str, Any] | None = None,
                       **user: Any) -> tuple[FakeRunner, RunningGateway]:
    """The fake Ollama (holding :data:`MODELS`) behind a TLS gateway under :data:`PREFIX`,
    with ``roles`` (default: :func:`policy_roles` with ``user``'s rules) and ``policy``."""
    upstream, gateway = start_proxy(testcase, PREFIX, roles=roles or policy_roles(**user),
                                    policy=policy)
    upstream.fake.models = list(MODELS)
    return upstream, gateway


def _request(method: str, path: str, token: str, body: Any = None, *,
             close: bool = True) -> bytes:
    data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    head = (f"{method} {PREFIX}{path} HTTP/1.1\r\nHost: gw\r\n"
            f"Authorization: Bearer {token}\r\n").encode()
    if close:
        head += b"Connection: close\r\n"
    if body is not None:
        head += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(data)
    return head + b"\r\n" + data


async def call(testcase: TestCase, gateway: RunningGateway, method: str, path: str, token: str,
               body: Any = None) -> RawResponse:
    """One request on its own TLS connection (``path`` under :data:`PREFIX`; ``body`` JSON,
    or bytes sent as they are), its answer as it came off the wire."""
    return await raw_exchange(testcase, gateway, _request(method, path, token, body))


async def stream_request(testcase: TestCase, gateway: RunningGateway, path: str, token: str,
                         body: Any) -> RawClient:
    """Start a POST on a raw TLS connection and return the connection (read it with
    ``wait_for``; ``close()`` walks away)."""
    client = await raw_connect(testcase, gateway)
    client.send(_request("POST", path, token, body))
    return client


def go_reads(body: bytes, name: str) -> Any:
    """The value of the top-level key ``name`` as Ollama's Go decoder reads it: keys compared
    without regard to case (Unicode simple folding, the Kelvin sign being a ``k``), the last
    one winning; None when there is none."""
    value = None
    for key, item in json.loads(body, object_pairs_hook=list):
        if key.casefold() == name.casefold():
            value = item
    return value


async def usage_report(gateway: RunningGateway, *options: str) -> list[dict[str, Any]]:
    """Stop the gateway (its ledger written), then what ``runnergw usage --ledger … --format
    json options…`` prints, parsed."""
    assert gateway.ledger_path is not None
    await gateway.stop()
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["usage", "--ledger", str(gateway.ledger_path), "--format", "json",
                       *options])
    if status != 0:
        raise AssertionError(f"runnergw usage ended with {status}: {err.getvalue()}")
    rows: list[dict[str, Any]] = json.loads(out.getvalue())
    return rows


def spend_after_first_token(testcase: TestCase, upstream: FakeRunner, gateway: RunningGateway,
                            token: str) -> Callable[[int], Awaitable[None]]:
    """The step a streaming test runs (from the reactor) after each chunk its client reads:
    after the first, another generation of the same subject spends what the stream's lease
    left of the quota; then the fake's next held piece goes out."""

    async def step(received: int) -> None:
        seen = upstream.fake.requests[0]
        if received == 1:
            # The stream took a block of the quota with its first token.
            upstream.fake.gated = False
            other = await call(testcase, gateway, "POST", "/api/generate", token,
                               {"model": "llama3.2:1b", "prompt": "Hi"})
            testcase.assertEqual(other.status, 200)
        await seen.held()
        seen.release()

    return step
