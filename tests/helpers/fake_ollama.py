"""A fake Ollama server that speaks Ollama's wire format, for tests and benchmarks (loopback only).

It streams NDJSON as Ollama does (one flushed JSON object per line, ``done: true`` last, with
the token counts), and the OpenAI-compatible chat as server-sent events (usage last when asked
for); it generates at most the tokens a request allows, can pace its chunks, hold each chunk
until a test releases it, never answer, close early on request, and records what it received,
how many connections it accepted and when its clients went away. JSON is written compact, as
Ollama's Go encoder writes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from twisted.web import resource, server
from twisted.web.server import NOT_DONE_YET

__all__ = ["CountingSite", "FakeOllama", "RecordedRequest"]


class RecordedRequest:
    """What the fake saw of one request."""

    def __init__(self, request: server.Request, body: bytes) -> None:
        self.method = request.method.decode()
        self.path = request.uri.decode()
        self.headers = {
            name.decode().lower(): [v.decode("latin-1") for v in values]
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        self.body = body
        self.body_sha256 = hashlib.sha256(body).hexdigest()
        self.disconnected: Deferred[None] = Deferred()
        """Fires when the client went away before the response was finished."""
        self.finished: Deferred[None] = Deferred()
        """Fires when the response was complete."""
        self.pieces_sent = 0
        """Streamed pieces (NDJSON lines, SSE events) written so far."""
        self.gated = False
        """Whether the fake holds this request's pieces (``FakeOllama.gated`` when it arrived;
        a test may change it for this request alone)."""
        self._gate: Deferred[None] | None = None
        self._hold_waiters: list[Deferred[int]] = []

    @property
    def holding(self) -> bool:
        """True while the fake holds the next streamed piece back (see ``FakeOllama.gated``)."""
        return self._gate is not None

    def held(self) -> Deferred[int]:
        """Fires with ``pieces_sent`` once the fake is holding the next piece back."""
        if self._gate is not None:
            return succeed(self.pieces_sent)
        waiter: Deferred[int] = Deferred()
        self._hold_waiters.append(waiter)
        return waiter

    def release(self) -> None:
        """Let the held piece go out."""
        gate, self._gate = self._gate, None
        if gate is None:
            raise AssertionError("the fake is not holding a piece")
        gate.callback(None)

    def _hold(self) -> Deferred[None]:
        self._gate = Deferred()
        waiters, self._hold_waiters = self._hold_waiters, []
        for waiter in waiters:
            waiter.callback(self.pieces_sent)
        return self._gate


class FakeOllama(resource.Resource):
    """``/``, ``/api/version``, ``/api/tags``, ``/api/ps``, ``/api/generate``, ``/api/chat``,
    ``/api/pull``, ``/api/delete``, ``/api/blobs``, ``/v1/models``, ``/v1/chat/completions``.

    Each generated token is one streamed piece: an NDJSON line, or an SSE event. Knobs in the
    JSON body: ``options.num_predict`` (tokens generated, default 3; 0 or less: the default, as
    for Ollama it means no limit), ``options.delay`` (seconds between chunks, scheduled on
    ``clock``), ``options.close_after`` (drop the connection after that many chunks),
    ``options.pad`` (bytes of padding added to each streamed chunk, for large responses);
    ``max_tokens`` for ``/v1/chat/completions``, which streams only with ``"stream": true``
    and then ends with one piece holding the ``finish_reason`` chunk, the usage-only chunk
    (with ``stream_options.include_usage``) and ``data: [DONE]``, as Ollama writes them
    together.

    Knobs on the object: ``gated`` holds every streamed piece after the first until the test
    calls ``RecordedRequest.release()`` (the response ends as soon as the last piece is out;
    read when a request arrives: ``RecordedRequest.gated`` changes it for one request);
    ``hang`` records requests and never answers them; ``response_headers`` are added to every
    response; ``models`` are the models it has (listed by ``/api/tags``, ``/v1/models`` and,
    as loaded, ``/api/ps``); ``prompt_tokens`` is the ``prompt_eval_count`` it reports.
    """

    isLeaf = True

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__()
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self.checks: list[RecordedRequest] = []
        """The gateway's own checks of the host (``/api/ps``, ``/api/version``), answered
        even with ``hang``; not in ``requests``."""
        self.check_arrived: list[Deferred[RecordedRequest]] = []
        self.request_arrived: list[Deferred[RecordedRequest]] = []
        self.gated = False
        self.hang = False
        self.response_headers: list[tuple[bytes, bytes]] = []
        self.models: list[str] = ["llama3.2:1b"]
        self.prompt_tokens = 5

    def next_request(self) -> Deferred[RecordedRequest]:
        """A Deferred that fires with the next request the fake receives."""
        waiter: Deferred[RecordedRequest] = Deferred()
        self.request_arrived.append(waiter)
        return waiter

    def next_check(self) -> Deferred[RecordedRequest]:
        """A Deferred that fires with the next check of the gateway's the fake receives."""
        waiter: Deferred[RecordedRequest] = Deferred()
        self.check_arrived.append(waiter)
        return waiter

    def render(self, request: server.Request) -> Any:
        body = request.content.read()
        record = RecordedRequest(request, body)
        record.gated = self.gated
        request.notifyFinish().addCallbacks(
            lambda _: record.finished.callback(None),
            lambda _: record.disconnected.callback(None),
        )
        if _gateway_check(request):
            self.checks.append(record)
            waiters, self.check_arrived = self.check_arrived, []
            for waiter in waiters:
                waiter.callback(record)
        else:
            self.requests.append(record)
            waiters, self.request_arrived = self.request_arrived, []
            for waiter in waiters:
                waiter.callback(record)
            if self.hang:
                return NOT_DONE_YET
        for name, value in self.response_headers:
            request.responseHeaders.addRawHeader(name, value)
        path = request.path.decode()
        if path == "/" and request.method in (b"GET", b"HEAD"):
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Ollama is running"
        if path == "/api/version":
            return self._json(request, {"version": "0.12.0"})
        if path == "/api/tags":
            return self._json(request, {"models": [self._model(name) for name in self.models]})
        if path == "/api/ps":
            return self._json(request, {"models": [self._loaded(name) for name in self.models]})
        if path == "/v1/models":
            return self._json(request, {"object": "list", "data": [
                {"id": name, "object": "model", "created": 1735689600, "owned_by": "library"}
                for name in self.models]})
        if path.startswith("/api/blobs/"):
            request.setResponseCode(201)
            return b""
        if path == "/api/pull" and request.method == b"POST":
            return self._pull(request, record, body)
        if path == "/api/delete" and request.method == b"DELETE":
            return b""
        if path in ("/api/generate", "/api/chat") and request.method == b"POST":
            return self._inference(request, record, path, body)
        if path == "/v1/chat/completions" and request.method == b"POST":
            return self._openai(request, record, body)
        request.setResponseCode(404)
        return self._json(request, {"error": f"path {path} not found"})

    @staticmethod
    def _json(request: server.Request, value: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return _compact(value)

    @staticmethod
    def _model(name: str) -> dict[str, Any]:
        return {
            "name": name, "model": name, "modified_at": "2025-01-01T00:00:00Z",
            "size": 1321098329, "digest": "a" * 64,
            "details": {"format": "gguf", "family": "llama", "parameter_size": "1.2B",
                        "quantization_level": "Q8_0"},
        }

    @classmethod
    def _loaded(cls, name: str) -> dict[str, Any]:
        model = cls._model(name)
        del model["modified_at"]
        model.update(expires_at="2025-01-01T00:05:00Z", size_vram=model["size"],
                     context_length=4096)
        return model

    def _pull(self, request: server.Request, record: RecordedRequest, body: bytes) -> Any:
        data = json.loads(body or b"{}")
        if data.get("stream", True) is False:
            return self._json(request, {"status": "success"})
        request.setHeader(b"content-type", b"application/x-ndjson")
        lines = [_compact({"status": status}) + b"\n"
                 for status in ("pulling manifest", "verifying sha256 digest", "success")]
        self._stream(request, record, lines, 0.0, None)
        return NOT_DONE_YET

    def _inference(self, request: server.Request, record: RecordedRequest, path: str,
                   body: bytes) -> Any:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            request.setResponseCode(400)
            return self._json(request, {"error": "invalid JSON"})
        options = data.get("options") or {}
        count = _limit(options.get("num_predict"))
        model = data.get("model", "llama3.2:1b")
        chat = path == "/api/chat"
        pad = int(options.get("pad", 0))

        def chunk(index: int, done: bool) -> dict[str, Any]:
            piece: dict[str, Any] = {"model": model, "created_at": "2025-01-01T00:00:00Z",
                                     "done": done}
            if pad and not done:
                piece["pad"] = "x" * pad
            text = "" if done else f"t{index} "
            if chat:
                piece["message"] = {"role": "assistant", "content": text}
            else:
                piece["response"] = text
            if done:
                piece.update(done_reason="stop", total_duration=1000, load_duration=10,
                             prompt_eval_count=self.prompt_tokens, prompt_eval_duration=100,
                             eval_count=count, eval_duration=800)
            return piece

        if data.get("stream", True) is False:
            final = chunk(count, True)
            text = "".join(f"t{i} " for i in range(count))
            if chat:
                final["message"] = {"role": "assistant", "content": text}
            else:
                final["response"] = text
            return self._json(request, final)
        request.setHeader(b"content-type", b"application/x-ndjson")
        lines = [_compact(chunk(i, False)) + b"\n" for i in range(count)]
        lines.append(_compact(chunk(count, True)) + b"\n")
        self._stream(request, record, lines, float(options.get("delay", 0)),
                     options.get("close_after"))
        return NOT_DONE_YET

    def _openai(self, request: server.Request, record: RecordedRequest, body: bytes) -> Any:
        data = json.loads(body or b"{}")
        count = _limit(data.get("max_tokens"))
        model = data.get("model")
        usage = {"prompt_tokens": self.prompt_tokens, "completion_tokens": count,
                 "total_tokens": self.prompt_tokens + count}
        head = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1735689600,
                "model": model, "system_fingerprint": "fp_ollama"}
        if data.get("stream") is not True:
            text = "".join(f"t{i} " for i in range(count))
            return self._json(request, {
                **head, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                             "finish_reason": "stop"}],
                "usage": usage})

        def event(value: dict[str, Any]) -> bytes:
            return b"data: " + _compact(value) + b"\n\n"

        def choice(text: str, finish: str | None) -> dict[str, Any]:
            return {**head, "choices": [{"index": 0,
                                         "delta": {"role": "assistant", "content": text},
                                         "finish_reason": finish}]}

        request.setHeader(b"content-type", b"text/event-stream")
        events = [event(choice(f"t{i} ", None)) for i in range(count)]
        last = event(choice("", "stop"))
        if (data.get("stream_options") or {}).get("include_usage") is True:
            last += event({**head, "choices": [], "usage": usage})
        events.append(last + b"data: [DONE]\n\n")
        self._stream(request, record, events, 0.0, None)
        return NOT_DONE_YET

    def _stream(self, request: server.Request, record: RecordedRequest, pieces: list[bytes],
                delay: float, close_after: Any) -> None:
        gone: list[bool] = []
        pending: list[Any] = []

        def went_away(reason: Failure) -> None:
            gone.append(True)
            for call in pending:
                if call.active():
                    call.cancel()

        request.notifyFinish().addErrback(went_away)

        def send(index: int) -> None:
            if gone:
                return
            if close_after is not None and index >= int(close_after):
                request.channel.transport.abortConnection()
                return
            if index == len(pieces):
                request.finish()
                return
            request.write(pieces[index])
            record.pieces_sent = index + 1
            if record.gated and index + 1 < len(pieces):
                record._hold().addCallback(lambda _: send(index + 1))
            elif delay:
                pending[:] = [self.clock.callLater(delay, send, index + 1)]
            else:
                send(index + 1)

        send(0)


def _gateway_check(request: server.Request) -> bool:
    """True for a request the gateway made of its own (no client's request forwarded)."""
    return (request.getHeader(b"user-agent") == b"runnergw"
            and request.getHeader(b"x-forwarded-for") is None)


def _compact(value: Any) -> bytes:
    """JSON as Go's ``encoding/json`` writes it: no spaces."""
    return json.dumps(value, separators=(",", ":")).encode()


def _limit(asked: Any) -> int:
    """Tokens to generate: what the request allows, 3 when it sets no (positive) limit."""
    count = int(asked) if isinstance(asked, (int, float)) else 0
    return count if count > 0 else 3


class CountingSite(server.Site):
    """A ``Site`` that counts the connections it accepted and knows when they all closed."""

    def __init__(self, resource_: resource.Resource) -> None:
        super().__init__(resource_)
        self.noisy = False
        self.accepted = 0
        self.open_channels: set[Any] = set()
        self._all_closed: list[Deferred[None]] = []

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        self.accepted += 1
        self.open_channels.add(channel)
        lost = channel.connectionLost

        def connection_lost(reason: Failure) -> None:
            lost(reason)
            self.open_channels.discard(channel)
            if not self.open_channels:
                waiters, self._all_closed = self._all_closed, []
                for waiter in waiters:
                    waiter.callback(None)

        channel.connectionLost = connection_lost
        return channel

    def all_closed(self) -> Deferred[None]:
        """Fires once no accepted connection is open any more."""
        if not self.open_channels:
            return succeed(None)
        waiter: Deferred[None] = Deferred()
        self._all_closed.append(waiter)
        return waiter
