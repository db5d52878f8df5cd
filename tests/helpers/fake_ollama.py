"""A fake Ollama server that speaks Ollama's wire format, for tests and benchmarks (loopback only).

It streams NDJSON as Ollama does (one flushed JSON object per line, ``done: true`` last),
can pace its chunks, closes early on request, and records what it received and when its
clients went away.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.web import resource, server
from twisted.web.server import NOT_DONE_YET

__all__ = ["FakeOllama", "RecordedRequest"]


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
        self.disconnected: Deferred[None] = Deferred()
        """Fires when the client went away before the response was finished."""
        self.finished: Deferred[None] = Deferred()
        """Fires when the response was complete."""


class FakeOllama(resource.Resource):
    """``/``, ``/api/version``, ``/api/tags``, ``/api/generate``, ``/api/chat``, ``/api/blobs``,
    ``/v1/chat/completions``.

    Knobs in the JSON body: ``options.num_predict`` (number of streamed chunks, default 3),
    ``options.delay`` (seconds between chunks, scheduled on ``clock``), ``options.close_after``
    (drop the connection after that many chunks).
    """

    isLeaf = True

    def __init__(self, clock: IReactorTime) -> None:
        super().__init__()
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self.request_arrived: list[Deferred[RecordedRequest]] = []

    def next_request(self) -> Deferred[RecordedRequest]:
        """A Deferred that fires with the next request the fake receives."""
        waiter: Deferred[RecordedRequest] = Deferred()
        self.request_arrived.append(waiter)
        return waiter

    def render(self, request: server.Request) -> Any:
        body = request.content.read()
        record = RecordedRequest(request, body)
        self.requests.append(record)
        request.notifyFinish().addCallbacks(
            lambda _: record.finished.callback(None),
            lambda _: record.disconnected.callback(None),
        )
        waiters, self.request_arrived = self.request_arrived, []
        for waiter in waiters:
            waiter.callback(record)
        path = request.path.decode()
        if path == "/" and request.method in (b"GET", b"HEAD"):
            request.setHeader(b"content-type", b"text/plain; charset=utf-8")
            return b"Ollama is running"
        if path == "/api/version":
            return self._json(request, {"version": "0.12.0"})
        if path == "/api/tags":
            return self._json(request, {"models": [self._model("llama3.2:1b")]})
        if path.startswith("/api/blobs/"):
            request.setResponseCode(201)
            return b""
        if path in ("/api/generate", "/api/chat") and request.method == b"POST":
            return self._inference(request, path, body)
        if path == "/v1/chat/completions" and request.method == b"POST":
            return self._openai(request, body)
        request.setResponseCode(404)
        return self._json(request, {"error": f"path {path} not found"})

    @staticmethod
    def _json(request: server.Request, value: Any) -> bytes:
        request.setHeader(b"content-type", b"application/json; charset=utf-8")
        return json.dumps(value).encode()

    @staticmethod
    def _model(name: str) -> dict[str, Any]:
        return {
            "name": name, "model": name, "modified_at": "2025-01-01T00:00:00Z",
            "size": 1321098329, "digest": "a" * 64,
            "details": {"format": "gguf", "family": "llama", "parameter_size": "1.2B",
                        "quantization_level": "Q8_0"},
        }

    def _inference(self, request: server.Request, path: str, body: bytes) -> Any:
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            request.setResponseCode(400)
            return self._json(request, {"error": "invalid JSON"})
        options = data.get("options") or {}
        count = int(options.get("num_predict", 3))
        model = data.get("model", "llama3.2:1b")
        chat = path == "/api/chat"

        def chunk(index: int, done: bool) -> dict[str, Any]:
            piece = {"model": model, "created_at": "2025-01-01T00:00:00Z", "done": done}
            text = "" if done else f"t{index} "
            if chat:
                piece["message"] = {"role": "assistant", "content": text}
            else:
                piece["response"] = text
            if done:
                piece.update(done_reason="stop", total_duration=1000, load_duration=10,
                             prompt_eval_count=5, prompt_eval_duration=100, eval_count=count,
                             eval_duration=800)
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
        lines = [json.dumps(chunk(i, False)).encode() + b"\n" for i in range(count)]
        lines.append(json.dumps(chunk(count, True)).encode() + b"\n")
        self._stream(request, lines, float(options.get("delay", 0)),
                     options.get("close_after"))
        return NOT_DONE_YET

    def _openai(self, request: server.Request, body: bytes) -> Any:
        data = json.loads(body or b"{}")
        request.setHeader(b"content-type", b"text/event-stream")
        events = [
            b"data: " + json.dumps({"object": "chat.completion.chunk", "model": data.get("model"),
                                    "choices": [{"index": 0, "delta": {"content": f"t{i} "}}]}
                                   ).encode() + b"\n\n"
            for i in range(int(data.get("max_tokens", 3)))
        ]
        events.append(b"data: [DONE]\n\n")
        self._stream(request, events, 0.0, None)
        return NOT_DONE_YET

    def _stream(self, request: server.Request, pieces: list[bytes], delay: float,
                close_after: Any) -> None:
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

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
            if delay:
                self.clock.callLater(delay, send, index + 1)
            else:
                send(index + 1)

        send(0)
