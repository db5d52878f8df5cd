"""Roles, limits and quotas through a real gateway, as a user of the official ``ollama`` client
sees them: TLS, PASETO tokens, the fake Ollama on loopback."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import ollama
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial.unittest import TestCase

from runnergw.filters.usage import LEASE_BLOCK
from tests.helpers.ollama_proxy import in_thread_with, ollama_client
from tests.helpers.policy import (
    MODELS,
    PREFIX,
    USER_MODELS,
    call,
    spend_after_first_token,
    start_policy_proxy,
    stream_request,
)

__all__ = ["ConcurrencyTests", "DailyQuotaTests", "ManagementTests", "ModelAccessTests",
           "RateLimitTests"]


def _refused(testcase: TestCase, client: ollama.Client,
             action: Callable[[ollama.Client], Any]) -> Deferred[ollama.ResponseError]:
    """The ``ResponseError`` the call ends with, run in a thread."""
    return testcase.assertFailure(deferToThread(in_thread_with, client, action),
                                  ollama.ResponseError)


class ModelAccessTests(TestCase):
    """A role sees and uses only its models."""

    timeout = 10

    async def test_refused_model_names_model_and_role(self) -> None:
        """Generating with a model outside the role is ``ResponseError`` 403 naming both;
        Ollama never hears of it."""
        upstream, gateway = start_policy_proxy(self)
        client = ollama_client(gateway, PREFIX, gateway.token(role="user"))
        error = await _refused(self, client, lambda c: c.generate(
            model="qwen2.5:7b", prompt="Hi", stream=False))
        self.assertEqual((error.status_code, error.error),
                         (403, 'model "qwen2.5:7b" is not available to role "user"'))
        self.assertEqual(upstream.fake.requests, [])

    async def test_list_shows_only_the_role_models(self) -> None:
        """``client.list()`` shows the role's models, not every model Ollama has."""
        upstream, gateway = start_policy_proxy(self)
        client = ollama_client(gateway, PREFIX, gateway.token(role="user"))
        listed = await deferToThread(in_thread_with, client, lambda c: c.list())
        self.assertEqual([model.model for model in listed.models], USER_MODELS)
        self.assertEqual([seen.path for seen in upstream.fake.requests], ["/api/tags"])

    async def test_head_of_the_list_tells_its_filtered_length(self) -> None:
        """``HEAD /api/tags`` answers the length of the role's list, with no body: the size
        of Ollama's whole list (how many models are hidden) is not told."""
        _, gateway = start_policy_proxy(self)
        token = gateway.token(role="user")
        full = await call(self, gateway, "GET", "/api/tags", token)
        head = await call(self, gateway, "HEAD", "/api/tags", token)
        self.assertEqual((head.status, head.body), (200, b""))
        self.assertEqual(head.header("Content-Length"), str(len(full.body)))

    async def test_admin_lists_every_model(self) -> None:
        """A role given every model sees Ollama's whole list."""
        upstream, gateway = start_policy_proxy(self)
        client = ollama_client(gateway, PREFIX, gateway.token(role="admin"))
        listed = await deferToThread(in_thread_with, client, lambda c: c.list())
        self.assertEqual([model.model for model in listed.models], MODELS)

    async def test_running_models_filtered(self) -> None:
        """``client.ps()`` shows only the loaded models the role may use."""
        upstream, gateway = start_policy_proxy(self)
        client = ollama_client(gateway, PREFIX, gateway.token(role="user"))
        running = await deferToThread(in_thread_with, client, lambda c: c.ps())
        self.assertEqual([model.model for model in running.models], USER_MODELS)
        self.assertEqual([model.size_vram for model in running.models], [1321098329] * 3)


class ManagementTests(TestCase):
    """Pulling and deleting models is for roles given ``management``."""

    timeout = 10

    async def test_user_may_not_pull_or_delete(self) -> None:
        """``pull`` and ``delete`` by a user are ``ResponseError`` 403; Ollama hears neither."""
        upstream, gateway = start_policy_proxy(self)
        token = gateway.token(role="user")
        pull = await _refused(self, ollama_client(gateway, PREFIX, token),
                              lambda c: c.pull("llama3.2:1b"))
        delete = await _refused(self, ollama_client(gateway, PREFIX, token),
                                lambda c: c.delete("llama3.2:1b"))
        self.assertEqual((pull.status_code, pull.error), (
            403, 'role "user" may not use management endpoints (/api/pull)'))
        self.assertEqual((delete.status_code, delete.error), (
            403, 'role "user" may not use management endpoints (/api/delete)'))
        self.assertEqual(upstream.fake.requests, [])

    async def test_admin_pulls_and_deletes(self) -> None:
        """An admin's ``pull`` and ``delete`` reach Ollama and succeed."""
        upstream, gateway = start_policy_proxy(self)
        token = gateway.token(role="admin")
        pulled = await deferToThread(in_thread_with, ollama_client(gateway, PREFIX, token),
                                     lambda c: c.pull("qwen2.5:7b"))
        deleted = await deferToThread(in_thread_with, ollama_client(gateway, PREFIX, token),
                                      lambda c: c.delete("qwen2.5:7b"))
        self.assertEqual((pulled.status, deleted.status), ("success", "success"))
        self.assertEqual(
            [(seen.method, seen.path, json.loads(seen.body)["model"])
             for seen in upstream.fake.requests],
            [("POST", "/api/pull", "qwen2.5:7b"), ("DELETE", "/api/delete", "qwen2.5:7b")])


class DailyQuotaTests(TestCase):
    """``tokensPerDay`` holds mid-stream, and a spent quota is a 429."""

    timeout = 10

    async def test_stream_cut_at_the_quota_ends_cleanly(self) -> None:
        """When another request of the same subject spends the quota while a stream runs,
        the stream ends with a normal last chunk (``done_reason`` "length") and no error,
        and the request to Ollama is closed."""
        quota = LEASE_BLOCK + 4
        upstream, gateway = start_policy_proxy(self, tokensPerDay=quota)
        upstream.fake.gated = True
        token = gateway.token(subject="alice", role="user")

        step = spend_after_first_token(self, upstream, gateway, token)

        def generate(c: ollama.Client) -> list[ollama.GenerateResponse]:
            parts = []
            for part in c.generate(model="llama3.2:1b", prompt="Hi", stream=True,
                                   options={"num_predict": 30}):
                parts.append(part)
                if not part.done:
                    blockingCallFromThread(reactor, step, len(parts))
            return parts

        parts = await deferToThread(in_thread_with, ollama_client(gateway, PREFIX, token),
                                    generate)
        self.assertEqual([part.response for part in parts],
                         [f"t{i} " for i in range(LEASE_BLOCK)] + [""])
        last = parts[-1]
        self.assertEqual((last.done, last.done_reason, last.eval_count),
                         (True, "length", LEASE_BLOCK))
        await upstream.fake.requests[0].disconnected

    async def test_spent_quota_is_a_429(self) -> None:
        """Once a subject's daily tokens are spent, the next generation is
        ``ResponseError`` 429 naming the quota; Ollama does not hear it."""
        upstream, gateway = start_policy_proxy(self, tokensPerDay=10)
        token = gateway.token(subject="alice", role="user")
        first = await deferToThread(in_thread_with, ollama_client(gateway, PREFIX, token),
                                    lambda c: c.generate(model="llama3.2:1b", prompt="Hi",
                                                         stream=False))
        self.assertTrue(first.done)
        error = await _refused(self, ollama_client(gateway, PREFIX, token),
                               lambda c: c.generate(model="llama3.2:1b", prompt="Hi",
                                                    stream=False))
        self.assertEqual((error.status_code, error.error), (
            429, 'the daily token quota of role "user" (10) is spent until the day ends'))
        self.assertEqual(len(upstream.fake.requests), 1)

    async def test_spent_quota_says_when_it_resets(self) -> None:
        """The 429 of a spent quota carries ``Retry-After``: the seconds until midnight."""
        upstream, gateway = start_policy_proxy(self, tokensPerDay=10)
        token = gateway.token(subject="alice", role="user")
        body = {"model": "llama3.2:1b", "prompt": "Hi", "stream": False}
        first = await call(self, gateway, "POST", "/api/generate", token, body)
        self.assertEqual(first.status, 200)
        refused = await call(self, gateway, "POST", "/api/generate", token, body)
        self.assertEqual(refused.status, 429)
        reset = gateway.service.limits.days.seconds_to_reset()
        self.assertTrue(1 <= int(refused.header("Retry-After")) <= reset + 2,
                        refused.header("Retry-After"))


class RateLimitTests(TestCase):
    """``requestsPerMinute`` and ``burst`` per subject."""

    timeout = 10

    async def test_over_the_rate_is_a_429(self) -> None:
        """With one request a minute, the second is ``ResponseError`` 429 naming the role."""
        upstream, gateway = start_policy_proxy(self, requestsPerMinute=1, burst=1)
        token = gateway.token(role="user")
        await deferToThread(in_thread_with, ollama_client(gateway, PREFIX, token),
                            lambda c: c.list())
        error = await _refused(self, ollama_client(gateway, PREFIX, token), lambda c: c.list())
        self.assertEqual(error.status_code, 429)
        self.assertTrue(error.error.startswith('rate limit of role "user" reached: retry in '),
                        error.error)
        self.assertEqual(len(upstream.fake.requests), 1)

    async def test_rate_limit_headers(self) -> None:
        """An answer within the rate says how many requests are left; the refusal says when
        to retry (``Retry-After``) and carries the same ``RateLimit-*`` headers."""
        upstream, gateway = start_policy_proxy(self, requestsPerMinute=1, burst=1)
        token = gateway.token(role="user")
        allowed = await call(self, gateway, "GET", "/api/tags", token)
        refused = await call(self, gateway, "GET", "/api/tags", token)
        self.assertEqual(allowed.status, 200)
        self.assertEqual((allowed.header("RateLimit-Limit"),
                          allowed.header("RateLimit-Remaining")), ("1", "0"))
        self.assertTrue(1 <= int(allowed.header("RateLimit-Reset")) <= 60)
        self.assertEqual(refused.status, 429)
        self.assertTrue(1 <= int(refused.header("Retry-After")) <= 60)
        self.assertEqual((refused.header("RateLimit-Limit"),
                          refused.header("RateLimit-Remaining")), ("1", "0"))
        self.assertTrue(1 <= int(refused.header("RateLimit-Reset")) <= 60)
        self.assertIn("rate limit", json.loads(refused.body)["error"])


class ConcurrencyTests(TestCase):
    """``concurrency`` counts a subject's running generations, not its catalogue calls."""

    timeout = 10

    async def test_second_generation_waits_for_none(self) -> None:
        """While one stream runs, a second generation of the subject is 429 with
        ``Retry-After: 1``; listing models still works."""
        upstream, gateway = start_policy_proxy(self, concurrency=1)
        upstream.fake.gated = True
        token = gateway.token(subject="alice", role="user")
        running = await stream_request(self, gateway, "/api/generate", token,
                                       {"model": "llama3.2:1b", "prompt": "Hi"})
        await running.wait_for(b'"t0 "')
        second = await call(self, gateway, "POST", "/api/generate", token,
                            {"model": "llama3.2:1b", "prompt": "Hi"})
        listed = await call(self, gateway, "GET", "/api/tags", token)
        self.assertEqual((second.status, second.header("Retry-After")), (429, "1"))
        self.assertEqual(json.loads(second.body), {"error": (
            '1 request of this caller is already under way (the limit of role "user")')})
        self.assertEqual(listed.status, 200)
        self.assertEqual(len(upstream.fake.requests), 2)
