"""Roles, limits and quotas on Ollama's OpenAI-compatible API, as a user of the official
``openai`` client sees them through a real gateway."""

from __future__ import annotations

import json
from typing import Any

import openai
from twisted.internet import reactor
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.trial.unittest import TestCase

from runnergw.filters.usage import LEASE_BLOCK
from tests.helpers.ollama_proxy import in_thread_with, openai_client
from tests.helpers.policy import (
    PREFIX,
    USER_MODELS,
    spend_after_first_token,
    start_policy_proxy,
    usage_report,
)

__all__ = ["OpenAIAccessTests", "OpenAIQuotaTests", "OpenAIUsageTests"]

_HELLO = [{"role": "user", "content": "Hello"}]


def _failure(testcase: TestCase, client: openai.OpenAI, action: Any,
             error: type[openai.APIStatusError]) -> Any:
    """The error of that class the call ends with, run in a thread."""
    return testcase.assertFailure(deferToThread(in_thread_with, client, action), error)


class OpenAIAccessTests(TestCase):
    """The role's models, seen through ``/v1``."""

    timeout = 10

    async def test_refused_model_is_permission_denied(self) -> None:
        """A chat with a model outside the role is ``PermissionDeniedError`` (403) whose
        message (the error in OpenAI's shape, as Ollama's ``/v1`` answers) names the model
        and the role; Ollama never hears of it."""
        upstream, gateway = start_policy_proxy(self)
        client = openai_client(gateway, PREFIX, gateway.token(role="user"))
        error = await _failure(self, client, lambda c: c.chat.completions.create(
            model="qwen2.5:7b", messages=_HELLO), openai.PermissionDeniedError)
        self.assertEqual(error.status_code, 403)
        self.assertEqual(str(error), 'Error code: 403 - model "qwen2.5:7b" is not available '
                                     'to role "user"')
        self.assertEqual(error.type, "api_error")
        self.assertEqual(upstream.fake.requests, [])

    async def test_models_list_filtered(self) -> None:
        """``models.list()`` shows only the role's models."""
        upstream, gateway = start_policy_proxy(self)
        client = openai_client(gateway, PREFIX, gateway.token(role="user"))
        listed = await deferToThread(in_thread_with, client, lambda c: list(c.models.list()))
        self.assertEqual([model.id for model in listed], USER_MODELS)

    async def test_over_the_rate_is_a_rate_limit_error(self) -> None:
        """With one request a minute, the second is ``RateLimitError`` (429), not retried."""
        upstream, gateway = start_policy_proxy(self, requestsPerMinute=1, burst=1)
        token = gateway.token(role="user")
        await deferToThread(in_thread_with, openai_client(gateway, PREFIX, token),
                            lambda c: list(c.models.list()))
        error = await _failure(self, openai_client(gateway, PREFIX, token),
                               lambda c: list(c.models.list()), openai.RateLimitError)
        self.assertEqual(error.status_code, 429)
        self.assertTrue(1 <= int(error.response.headers["retry-after"]) <= 60)
        self.assertIn('rate limit of role "user" reached', str(error))
        self.assertEqual(len(upstream.fake.requests), 1)


class OpenAIUsageTests(TestCase):
    """A streamed chat completion is counted whether or not the client asked for usage."""

    timeout = 10

    async def test_stream_counted_without_the_client_asking(self) -> None:
        """The gateway asks Ollama for the usage chunk, counts it, and keeps it from a client
        that did not ask: every chunk the client sees has a choice and no usage."""
        upstream, gateway = start_policy_proxy(self)
        client = openai_client(gateway, PREFIX, gateway.token(role="user"))
        chunks = await deferToThread(in_thread_with, client, lambda c: list(
            c.chat.completions.create(model="llama3.2:1b", messages=_HELLO, stream=True,
                                      max_tokens=4)))
        self.assertEqual([chunk.choices[0].delta.content for chunk in chunks],
                         ["t0 ", "t1 ", "t2 ", "t3 ", ""])
        self.assertEqual([chunk.usage for chunk in chunks], [None] * 5)
        self.assertEqual(chunks[-1].choices[0].finish_reason, "stop")
        [seen] = upstream.fake.requests
        self.assertEqual(json.loads(seen.body)["stream_options"], {"include_usage": True})
        [row] = await usage_report(gateway)
        self.assertEqual((row["key"], row["prompt_tokens"], row["completion_tokens"]),
                         ("tester", 5, 4))

    async def test_usage_kept_for_a_client_that_asks(self) -> None:
        """A client asking for ``include_usage`` gets the usage chunk, as from Ollama."""
        upstream, gateway = start_policy_proxy(self)
        client = openai_client(gateway, PREFIX, gateway.token(role="user"))
        chunks = await deferToThread(in_thread_with, client, lambda c: list(
            c.chat.completions.create(model="llama3.2:1b", messages=_HELLO, stream=True,
                                      max_tokens=2, stream_options={"include_usage": True})))
        self.assertEqual(chunks[-1].choices, [])
        self.assertEqual((chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens),
                         (5, 2))

    async def test_whole_answer_counted(self) -> None:
        """A chat completion that is not streamed is counted from its ``usage``."""
        upstream, gateway = start_policy_proxy(self)
        client = openai_client(gateway, PREFIX, gateway.token(role="user"))
        answer = await deferToThread(in_thread_with, client, lambda c: (
            c.chat.completions.create(model="llama3.2:1b", messages=_HELLO, max_tokens=3)))
        self.assertEqual(answer.choices[0].message.content, "t0 t1 t2 ")
        [row] = await usage_report(gateway)
        self.assertEqual((row["prompt_tokens"], row["completion_tokens"]), (5, 3))


class OpenAIQuotaTests(TestCase):
    """The daily quota holds in a ``/v1`` stream too."""

    timeout = 10

    async def test_stream_cut_at_the_quota_ends_cleanly(self) -> None:
        """When the subject's quota is spent mid-stream, the client's iterator ends after a
        chunk with ``finish_reason`` "length", without an error; Ollama's request is closed."""
        # The chat's prompt is taken as 6 tokens (4 per message, "Hello" 2), its first token
        # takes a block of the quota: 4 are left for a generation of another request.
        upstream, gateway = start_policy_proxy(self, tokensPerDay=6 + LEASE_BLOCK + 4)
        upstream.fake.gated = True
        token = gateway.token(subject="alice", role="user")

        step = spend_after_first_token(self, upstream, gateway, token)

        def chat(c: openai.OpenAI) -> list[Any]:
            chunks = []
            for chunk in c.chat.completions.create(model="llama3.2:1b", messages=_HELLO,
                                                   stream=True, max_tokens=30):
                chunks.append(chunk)
                if chunk.choices[0].finish_reason is None:
                    blockingCallFromThread(reactor, step, len(chunks))
            return chunks

        chunks = await deferToThread(in_thread_with, openai_client(gateway, PREFIX, token),
                                     chat)
        self.assertEqual([chunk.choices[0].delta.content for chunk in chunks[:-1]],
                         [f"t{i} " for i in range(LEASE_BLOCK)])
        self.assertEqual(chunks[-1].choices[0].finish_reason, "length")
        await upstream.fake.requests[0].disconnected
