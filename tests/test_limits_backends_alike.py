"""The same requests to a node counting limits in its own process and to a node counting them
in Redis (each request's checks made in one ADMIT call): a user sees the same statuses,
messages and limit headers, and the operator the same audit lines and ledger rows."""

from __future__ import annotations

import json
import sqlite3
import time
from contextlib import closing
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import ensureDeferred
from twisted.internet.task import deferLater
from twisted.web._newclient import ResponseNeverReceived

from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.clients import BytesProducer, fetch
from tests.helpers.cluster import ClusterCase, ClusterNode

__all__ = ["BackendsAlikeTests"]

_GENERATE = "/ollama/api/generate"
_CHAT = "/ollama/v1/chat/completions"
_MODEL = "llama3.2:1b"
_LIMIT_HEADERS = ("retry-after", "ratelimit-limit", "ratelimit-remaining")

_ROLES = {
    "user": {},
    "rated": {"requestsPerMinute": 2, "burst": 2},
    "capped": {"concurrency": 1},
    "waiting": {"concurrency": 1, "concurrencyWait": "1s"},
    "quota": {"requestsPerMinute": 600, "burst": 100, "concurrency": 4,
              "tokensPerDay": 40, "maxTokens": 8, "models": [_MODEL]},
    "streams": {"concurrency": 4, "tokensPerDay": 30, "models": [_MODEL]},
}


def _generation(**fields: Any) -> dict[str, Any]:
    return {"model": _MODEL, "prompt": "hi", "stream": False, **fields}


class BackendsAlikeTests(ClusterCase):
    """``limits.backend: local`` and ``redis`` side by side, one node each."""

    def document(self, name: str, role: dict[str, Any],
                 limits: dict[str, Any] | None = None) -> dict[str, Any]:
        document = super().document(name, role, limits)
        document["roles"] = _ROLES
        document["audit"] = {"path": str(self.directory / f"{name}.audit")}
        document["policy"]["maxBodySize"] = 2048
        document["limits"]["nodes"] = 1
        return document

    async def both(self) -> tuple[ClusterNode, ClusterNode]:
        local = await self.start_node("local", {}, {"backend": "local"})
        return local, await self.start_node("redis", {})

    async def ask(self, node: ClusterNode, subject: str, path: str, body: Any = None,
                  raw: bytes | None = None) -> tuple[int, dict[str, str], bytes]:
        """One request of ``subject`` (its role named by the subject's first word)."""
        signing = load_signing_key((self.directory / "paseto.key").read_bytes(), 4)
        token = mint_token(signing, subject=subject, role=subject.split("-")[0],
                           lifetime=600, now=time.time())
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        data = raw if raw is not None else None if body is None else json.dumps(body).encode()
        producer = None if data is None else BytesProducer(data)
        response, read = await fetch(self.agent, "GET" if data is None else "POST",
                                     node.url + path, headers, producer)
        named = {name.decode().lower(): values[0].decode()
                 for name, values in response.headers.getAllRawHeaders()}
        return response.code, named, read

    def seen(self, status: int, headers: dict[str, str], body: bytes) -> tuple[Any, ...]:
        """What a user compares: the status, the limit headers, a refusal's body (a wait
        until the quota's day ends, read a second apart, is named, not counted)."""
        limit_headers = tuple((name, headers.get(name)) for name in _LIMIT_HEADERS)
        if int(headers.get("retry-after", 0)) > 60:
            limit_headers = (("retry-after", "until the day ends"), *limit_headers[1:])
        return status, limit_headers, body if status != 200 else b""

    async def stopped(self, *nodes: ClusterNode) -> list[Any]:
        """Each node stopped: its audit lines (status, outcome, reason, counts; in no
        particular order) and ledger rows."""
        found = []
        for node, name in zip(nodes, ("local", "redis"), strict=True):
            node.transport.signalProcess("TERM")  # type: ignore[union-attr]
            await node.ended
            audit = [json.loads(line) for line in
                     (self.directory / f"{name}.audit").read_text().splitlines()]
            lines = sorted(((line.get("status"), line.get("outcome"), line.get("reason"),
                             line.get("prompt_tokens"), line.get("completion_tokens"))
                            for line in audit), key=repr)
            with closing(sqlite3.connect(self.directory / f"{name}.sqlite")) as ledger:
                rows = ledger.execute("SELECT subject, role, model, requests, prompt_tokens, "
                                      "completion_tokens, truncated FROM usage "
                                      "ORDER BY subject").fetchall()
            found.append((lines, rows))
        return found

    async def test_refusals_alike(self) -> None:
        """Rate limited (native and OpenAI), quota spent, prompt over the quota, model not
        allowed, body not JSON, body too large: the same answers from both backends, the
        same audit lines and ledger rows."""
        nodes = await self.both()
        seen: list[list[Any]] = [[], []]
        for index, node in enumerate(nodes):
            for _ in range(3):
                seen[index].append(self.seen(*await self.ask(node, "rated-a",
                                                             "/ollama/api/tags")))
            for _ in range(3):
                seen[index].append(self.seen(*await self.ask(node, "rated-b",
                                                             "/ollama/v1/models")))
            for _ in range(6):
                seen[index].append(self.seen(*await self.ask(node, "quota-a", _GENERATE,
                                                             _generation())))
            seen[index].append(self.seen(*await self.ask(
                node, "quota-b", _GENERATE, _generation(prompt="word " * 200))))
            seen[index].append(self.seen(*await self.ask(
                node, "quota-c", _GENERATE, _generation(model="qwen2.5:7b"))))
            seen[index].append(self.seen(*await self.ask(node, "quota-d", _GENERATE,
                                                         raw=b"{not json")))
            seen[index].append(self.seen(*await self.ask(
                node, "quota-e", _GENERATE, _generation(prompt="x" * 4096))))
            for _ in range(2):
                seen[index].append(self.seen(*await self.ask(node, "quota-f", _CHAT, {
                    "model": _MODEL, "max_tokens": 30,
                    "messages": [{"role": "user", "content": "hi"}]})))
        self.assertEqual(seen[0], seen[1])
        local, shared = await self.stopped(*nodes)
        self.assertEqual(local, shared)

    async def client_leaving(self, node: ClusterNode, subject: str) -> None:
        """A request that waits for a place, its client leaving once it is under way (two
        exchanges in progress: the stream holding the place and it)."""
        leaving = ensureDeferred(self.ask(node, subject, _GENERATE, _generation()))
        metrics = await node.metrics_listening
        while await self.in_progress(metrics) < 2:
            await deferLater(reactor, 0.02, lambda: None)
        leaving.cancel()
        await self.assertFailure(leaving, ResponseNeverReceived)
        while await self.in_progress(metrics) > 1:
            await deferLater(reactor, 0.02, lambda: None)

    async def in_progress(self, metrics: str) -> float:
        """The node's ``runnergw_exchanges_in_progress``."""
        _, text = await fetch(self.agent, "GET", metrics.rstrip("/") + "/metrics")
        for line in text.decode().splitlines():
            if line.startswith("runnergw_exchanges_in_progress"):
                return float(line.split()[-1])
        raise AssertionError("no runnergw_exchanges_in_progress")

    async def test_concurrency_alike(self) -> None:
        """A place taken: refused at once, refused after concurrencyWait, a client leaving
        during the wait, a place given once freed during the wait: alike on both backends."""
        nodes = await self.both()
        seen: list[list[Any]] = [[], []]
        for index, node in enumerate(nodes):
            for subject in ("capped-a", "waiting-a"):
                self.fake.gated = True
                arrived = self.fake.next_request()
                stream = ensureDeferred(self.ask(node, subject, _GENERATE,
                                                 _generation(stream=True)))
                record = await arrived
                await record.held()
                self.fake.gated = False
                seen[index].append(self.seen(*await self.ask(node, subject, _GENERATE,
                                                             _generation())))
                if subject == "waiting-a":
                    await self.client_leaving(node, subject)
                freed = ensureDeferred(self.ask(node, subject, _GENERATE, _generation()))
                record.gated = False
                record.release()
                seen[index].append((await stream)[0])
                seen[index].append(self.seen(*await freed))
        self.assertEqual(seen[0], seen[1])
        local, shared = await self.stopped(*nodes)
        self.assertEqual(local, shared)

    async def openai_stream_cut(self, node: ClusterNode) -> tuple[int, list[Any]]:
        """An OpenAI chat stream whose quota a whole answer spends while it runs: its
        status and events (the finish reasons and usage)."""
        self.fake.gated = True
        arrived = self.fake.next_request()
        stream = ensureDeferred(self.ask(node, "streams-b", _CHAT, {
            "model": _MODEL, "stream": True, "max_tokens": 30,
            "messages": [{"role": "user", "content": "hi"}]}))
        record = await arrived
        await record.held()
        self.fake.gated = False
        await self.ask(node, "streams-b", _GENERATE, _generation(options={"num_predict": 30}))
        record.gated = False
        record.release()
        status, _, body = await stream
        events = []
        for event in body.split(b"\n\n"):
            data = event.removeprefix(b"data: ").strip()
            if data and data != b"[DONE]":
                document = json.loads(data)
                events.append(([choice.get("finish_reason")
                                for choice in document.get("choices", [])],
                               document.get("usage")))
            elif data:
                events.append(data)
        return status, events

    async def test_stream_cut_by_the_quota_alike(self) -> None:
        """A stream (native, then OpenAI) whose quota another request spends while it runs
        ends at its next lease with the same lines or events on both backends; the next
        request is refused alike."""
        nodes = await self.both()
        seen: list[list[Any]] = [[], []]
        for index, node in enumerate(nodes):
            self.fake.gated = True
            arrived = self.fake.next_request()
            stream = ensureDeferred(self.ask(node, "streams-a", _GENERATE, _generation(
                stream=True, options={"num_predict": 30})))
            record = await arrived
            await record.held()
            self.fake.gated = False
            seen[index].append(self.seen(*await self.ask(
                node, "streams-a", _GENERATE, _generation(options={"num_predict": 30}))))
            record.gated = False
            record.release()
            status, _, body = await stream
            lines = [json.loads(line) for line in body.splitlines()]
            seen[index].append((status, [(line.get("response"), line.get("done"),
                                          line.get("done_reason"), line.get("eval_count"))
                                         for line in lines]))
            seen[index].append(self.seen(*await self.ask(node, "streams-a", _GENERATE,
                                                         _generation())))
            seen[index].append(await self.openai_stream_cut(node))
        self.assertEqual(seen[0], seen[1])
        self.assertEqual(seen[1][1][1][-1][1:3], (True, "length"))
        self.assertEqual(seen[1][3][1][-2:], [(["length"], None), b"[DONE]"])
        local, shared = await self.stopped(*nodes)
        self.assertEqual(local, shared)
