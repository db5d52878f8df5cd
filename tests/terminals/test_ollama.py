"""The Ollama proxy terminal end to end: the official client, streaming, connection reuse."""

from __future__ import annotations

import json

import ollama
from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.internet.threads import blockingCallFromThread, deferToThread
from twisted.python.failure import Failure
from twisted.trial.unittest import TestCase
from twisted.web.client import ResponseDone
from twisted.web.http_headers import Headers

from tests.helpers.clients import BytesProducer, fetch, parse_response, raw_connect, tls_agent
from tests.helpers.ollama_proxy import generate_request, in_thread_with, ollama_client, start_proxy

__all__ = ["OfficialClientTests", "PersistentUpstreamTests", "PlainRequestTests",
           "StreamingTests"]


def _generate(prompt: str, **options: int) -> bytes:
    return json.dumps({"model": "llama3.2:1b", "prompt": prompt, "options": options}).encode()


def _auth(token: str) -> Headers:
    return Headers({b"Authorization": [b"Bearer " + token.encode()]})


def _body(data: bytes) -> BytesProducer:
    return BytesProducer(data)


class OfficialClientTests(TestCase):
    """The ``ollama`` package works unchanged against the gateway's TLS URL with a prefix."""

    timeout = 10

    async def test_list_models(self) -> None:
        """``ollama.list()`` through the gateway shows the runner's models."""
        upstream, gateway = start_proxy(self)
        client = ollama_client(gateway, "/local-ollama", gateway.token())
        listed = await deferToThread(in_thread_with, client, lambda c: c.list())
        self.assertEqual([model.model for model in listed.models], ["llama3.2:1b"])
        [seen] = upstream.fake.requests
        self.assertEqual((seen.method, seen.path), ("GET", "/api/tags"))

    async def test_generate_without_streaming(self) -> None:
        """``ollama.generate(stream=False)`` returns the whole completion."""
        upstream, gateway = start_proxy(self)
        client = ollama_client(gateway, "/local-ollama", gateway.token())
        result = await deferToThread(in_thread_with, client, lambda c: c.generate(
            model="llama3.2:1b", prompt="Why is the sky blue?", stream=False,
            options={"num_predict": 4}))
        self.assertEqual(result.response, "t0 t1 t2 t3 ")
        self.assertTrue(result.done)
        self.assertEqual(result.eval_count, 4)
        [seen] = upstream.fake.requests
        self.assertEqual((seen.method, seen.path), ("POST", "/api/generate"))
        self.assertEqual(json.loads(seen.body)["prompt"], "Why is the sky blue?")

    async def test_streaming_chat(self) -> None:
        """``ollama.chat(stream=True)`` yields each part while the runner still holds the next."""
        upstream, gateway = start_proxy(self)
        upstream.fake.gated = True
        client = ollama_client(gateway, "/local-ollama", gateway.token())

        async def runner_state() -> tuple[bool, int]:
            seen = upstream.fake.requests[-1]
            sent = await seen.held()
            holding = seen.holding
            seen.release()
            return holding, sent

        def chat(c: ollama.Client) -> tuple[list[ollama.ChatResponse], list[tuple[bool, int]]]:
            parts, states = [], []
            for part in c.chat(model="llama3.2:1b", stream=True, options={"num_predict": 3},
                               messages=[{"role": "user", "content": "Hello"}]):
                parts.append(part)
                if not part.done:
                    # The runner must still be holding the piece after the one just read.
                    states.append(blockingCallFromThread(reactor, runner_state))
                    self.assertEqual(states[-1], (True, len(parts)))
            return parts, states

        parts, states = await deferToThread(in_thread_with, client, chat)
        self.assertEqual([part.message.content for part in parts], ["t0 ", "t1 ", "t2 ", ""])
        self.assertEqual([part.done for part in parts], [False, False, False, True])
        self.assertEqual(parts[-1].done_reason, "stop")
        self.assertEqual(states, [(True, 1), (True, 2), (True, 3)])
        [seen] = upstream.fake.requests
        self.assertEqual((seen.method, seen.path), ("POST", "/api/chat"))

    async def test_runner_error_reaches_client(self) -> None:
        """A runner's ``{"error"}`` answer surfaces as ``ResponseError`` with status and message."""
        upstream, gateway = start_proxy(self)
        client = ollama_client(gateway, "/local-ollama", gateway.token())
        error = await self.assertFailure(
            deferToThread(in_thread_with, client, lambda c: c.show("llama3.2:1b")),
            ollama.ResponseError)
        self.assertEqual(error.status_code, 404)
        self.assertEqual(error.error, "path /api/show not found")
        self.assertEqual(upstream.fake.requests[0].path, "/api/show")

    async def test_gateway_refusal_reaches_client(self) -> None:
        """A bad token surfaces in the client as ``ResponseError`` 401 with the gateway's reason."""
        upstream, gateway = start_proxy(self)
        client = ollama_client(gateway, "/local-ollama", "v4.public.not-a-token")
        error = await self.assertFailure(
            deferToThread(in_thread_with, client, lambda c: c.list()), ollama.ResponseError)
        self.assertEqual(error.status_code, 401)
        self.assertNotIn("not-a-token", error.error)
        self.assertEqual(upstream.fake.requests, [])


class PlainRequestTests(TestCase):
    """Requests without a model behind them pass through unchanged."""

    timeout = 10

    async def test_head_of_the_prefix_root(self) -> None:
        """``HEAD /local-ollama`` answers like Ollama's ``HEAD /``: 200, a length, no body."""
        upstream, gateway = start_proxy(self)
        client = await raw_connect(self, gateway)
        client.send(b"HEAD /local-ollama HTTP/1.1\r\nHost: gw\r\n"
                    b"Authorization: Bearer " + gateway.token().encode() + b"\r\n"
                    b"Connection: close\r\n\r\n")
        await client.lost
        head, _, rest = client.data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        self.assertIn(b"\r\nContent-Length: 17\r\n", head + b"\r\n")
        self.assertEqual(rest, b"")
        [seen] = upstream.fake.requests
        self.assertEqual((seen.method, seen.path), ("HEAD", "/"))

    async def test_get_of_the_prefix_root(self) -> None:
        """``GET /local-ollama/`` shows Ollama's ``Ollama is running``."""
        upstream, gateway = start_proxy(self)
        agent = tls_agent(self, gateway)
        response, body = await fetch(agent, "GET", gateway.url + "/local-ollama/",
                                     {"Authorization": "Bearer " + gateway.token()})
        self.assertEqual((response.code, body), (200, b"Ollama is running"))
        self.assertEqual(upstream.fake.requests[0].path, "/")


class _FirstLine(Protocol):
    """Reads a streamed body, firing ``first`` at the first complete line."""

    def __init__(self, separator: bytes) -> None:
        self.separator = separator
        self.data = b""
        self.first: Deferred[bytes] = Deferred()
        self.done: Deferred[bytes] = Deferred()

    def dataReceived(self, data: bytes) -> None:
        self.data += data
        if not self.first.called and self.separator in self.data:
            self.first.callback(self.data.split(self.separator, 1)[0])

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if reason.check(ResponseDone):
            self.done.callback(self.data)
        else:
            self.done.errback(reason)


class StreamingTests(TestCase):
    """Generated tokens reach the client as the runner produces them, not at the end."""

    timeout = 10

    async def test_ndjson_line_arrives_while_runner_holds_the_rest(self) -> None:
        """The first NDJSON line of a generation reaches the client before the second exists."""
        upstream, gateway = start_proxy(self)
        upstream.fake.gated = True
        agent = tls_agent(self, gateway)
        response = await agent.request(
            b"POST", (gateway.url + "/local-ollama/api/generate").encode(),
            _auth(gateway.token()), _body(_generate("Hi", num_predict=2)))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"application/x-ndjson"])
        reader = _FirstLine(b"\n")
        response.deliverBody(reader)
        first = await reader.first
        [seen] = upstream.fake.requests
        self.assertTrue(seen.holding)
        self.assertEqual(seen.pieces_sent, 1)
        self.assertEqual(json.loads(first)["response"], "t0 ")
        for _ in range(2):
            await seen.held()
            seen.release()
        lines = [json.loads(line) for line in (await reader.done).splitlines()]
        self.assertEqual([line["done"] for line in lines], [False, False, True])

    async def test_sse_event_arrives_while_runner_holds_the_rest(self) -> None:
        """The first OpenAI-style SSE event reaches the client before the second exists."""
        upstream, gateway = start_proxy(self)
        upstream.fake.gated = True
        agent = tls_agent(self, gateway)
        body = json.dumps({"model": "llama3.2:1b", "stream": True, "max_tokens": 2,
                           "messages": [{"role": "user", "content": "Hi"}]}).encode()
        response = await agent.request(
            b"POST", (gateway.url + "/local-ollama/v1/chat/completions").encode(),
            _auth(gateway.token()), _body(body))
        self.assertEqual(response.headers.getRawHeaders(b"content-type"),
                         [b"text/event-stream"])
        reader = _FirstLine(b"\n\n")
        response.deliverBody(reader)
        first = await reader.first
        [seen] = upstream.fake.requests
        self.assertTrue(seen.holding)
        self.assertTrue(first.startswith(b"data: "))
        self.assertEqual(json.loads(first[6:])["choices"][0]["delta"]["content"], "t0 ")
        for _ in range(2):
            await seen.held()
            seen.release()
        self.assertTrue((await reader.done).endswith(b"data: [DONE]\n\n"))

    async def test_large_streamed_response_arrives_intact(self) -> None:
        """A multi-megabyte streamed answer arrives complete, line for line."""
        upstream, gateway = start_proxy(self)
        agent = tls_agent(self, gateway)
        response, body = await fetch(
            agent, "POST", gateway.url + "/local-ollama/api/generate",
            {"Authorization": "Bearer " + gateway.token()},
            _body(_generate("Hi", num_predict=64, pad=128 * 1024)))
        self.assertEqual(response.code, 200)
        lines = [json.loads(line) for line in body.splitlines()]
        self.assertEqual(len(lines), 65)
        self.assertEqual([line.get("response") for line in lines[:-1]],
                         [f"t{i} " for i in range(64)])
        self.assertTrue(all(len(line["pad"]) == 128 * 1024 for line in lines[:-1]))
        self.assertTrue(lines[-1]["done"])


class PersistentUpstreamTests(TestCase):
    """The gateway keeps its connections to a runner open between requests."""

    timeout = 10

    async def test_sequential_requests_share_one_upstream_connection(self) -> None:
        """Five requests in a row, even from separate clients, cost one connection to the runner."""
        upstream, gateway = start_proxy(self)
        token = gateway.token()
        for _ in range(5):
            client = await raw_connect(self, gateway)
            client.send(b"GET /local-ollama/api/tags HTTP/1.1\r\nHost: gw\r\n"
                        b"Authorization: Bearer " + token.encode() + b"\r\n"
                        b"Connection: close\r\n\r\n")
            await client.lost
            self.assertIn(b"llama3.2:1b", client.data)
        self.assertEqual(len(upstream.fake.requests), 5)
        self.assertEqual(upstream.site.accepted, 1)

    async def test_streamed_responses_keep_their_runner_connection(self) -> None:
        """Chunked generations one after another on one client reuse one runner connection."""
        upstream, gateway = start_proxy(self)
        client = await raw_connect(self, gateway)
        for _ in range(3):
            client.data = b""
            client.send(generate_request(gateway, num_predict=2))
            await client.wait_for_chunked_end()
            self.assertTrue(parse_response(client.data).complete)
        self.assertEqual(len(upstream.fake.requests), 3)
        self.assertEqual(upstream.site.accepted, 1)
