"""A minimal, fast stand-in for Ollama, used as the benchmark's upstream (loopback only).

It speaks just enough of Ollama's HTTP/1.1 API to be the baseline the gateway is measured
against, with as little work per request as possible:

* ``POST /api/generate`` and ``POST /api/chat`` with ``"stream": false`` answer one small JSON
  object with ``Content-Length``, as Ollama does.
* The same paths with streaming (Ollama's default) answer ``application/x-ndjson`` with
  ``Transfer-Encoding: chunked``, one JSON line per chunk and ``"done": true`` last.  The number
  of lines is ``--chunks``, the ``done`` line included (``options.num_predict`` in the
  request overrides it, up to ``--max-predict`` when given: a gateway's generation cap larger
  than that leaves the answer as it was), and the lines are paced ``--pause-ms`` apart on a
  fixed schedule counted from the first line, so the upstream's own timer jitter does not pile
  up over a long stream.
* ``GET /`` answers ``Ollama is running``, ``GET /api/version`` a version and ``GET /api/ps``
  the model ``m:latest`` as loaded (what a runner pool probes and polls); anything else is a
  404 JSON error.

Connections are kept alive (HTTP/1.1 default, ``Connection: close`` honoured) and pipelined
requests are answered in order.  Request bodies may come with ``Content-Length`` or chunked.

Run: ``python bench/fast_upstream.py [--port 0] [--chunks 200] [--pause-ms 5] [--max-predict
N]``; it prints ``listening <port>`` on standard output once it accepts connections.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from email.utils import formatdate
from typing import Any

__all__ = ["UpstreamProtocol", "serve"]

_CREATED_AT = "2025-01-01T00:00:00Z"
_MAX_HEAD = 65536


class _Dates:
    """The ``Date`` header, formatted at most once per second."""

    second = -1
    text = b""

    @classmethod
    def now(cls) -> bytes:
        second = int(time.time())
        if second != cls.second:
            cls.second = second
            cls.text = formatdate(second, usegmt=True).encode("ascii")
        return cls.text


def _final_fields(count: int) -> dict[str, Any]:
    return {"done_reason": "stop", "total_duration": 1000, "load_duration": 10,
            "prompt_eval_count": 5, "prompt_eval_duration": 100, "eval_count": count,
            "eval_duration": 800}


def _piece(model: str, chat: bool, text: str, done: bool, count: int) -> dict[str, Any]:
    piece: dict[str, Any] = {"model": model, "created_at": _CREATED_AT}
    if chat:
        piece["message"] = {"role": "assistant", "content": text}
    else:
        piece["response"] = text
    piece["done"] = done
    if done:
        piece.update(_final_fields(count))
    return piece


class UpstreamProtocol(asyncio.Protocol):
    """One client connection: parse requests, answer them one at a time, in order."""

    def __init__(self, chunks: int, pause: float, max_predict: int = 0) -> None:
        self.chunks = chunks
        self.pause = pause
        self.max_predict = max_predict
        """Most lines (tokens) an answer gets whatever ``num_predict`` asks (0: no cap)."""
        self.buffer = b""
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.closed = False
        self.timer: asyncio.TimerHandle | None = None
        self.loop = asyncio.get_event_loop()

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.busy:
            self._process()

    # Request parsing

    def _process(self) -> None:
        while not self.busy and not self.closed and self.buffer:
            parsed = self._next_request()
            if parsed is None:
                return
            self._answer(*parsed)

    def _next_request(self) -> tuple[str, str, dict[bytes, bytes], bytes] | None:
        buffer = self.buffer
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > _MAX_HEAD:
                self._fail(431, "request header block too large")
            return None
        lines = buffer[:end].split(b"\r\n")
        try:
            method, target, _version = lines[0].split(b" ", 2)
        except ValueError:
            self._fail(400, "bad request line")
            return None
        headers: dict[bytes, bytes] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            headers[name.strip().lower()] = value.strip()
        start = end + 4
        if b"chunked" in headers.get(b"transfer-encoding", b"").lower():
            decoded = _dechunk(buffer, start)
            if decoded is None:
                return None
            body, consumed = decoded
        else:
            length = int(headers.get(b"content-length", b"0") or b"0")
            if len(buffer) - start < length:
                return None
            body, consumed = buffer[start:start + length], start + length
        self.buffer = buffer[consumed:]
        return method.decode("latin-1"), target.decode("latin-1"), headers, body

    # Answers

    def _head(self, status: str, content_type: bytes, extra: bytes, close: bool) -> bytes:
        return (b"HTTP/1.1 " + status.encode("ascii") + b"\r\nContent-Type: " + content_type
                + b"\r\nDate: " + _Dates.now() + b"\r\n" + extra
                + (b"Connection: close\r\n" if close else b"") + b"\r\n")

    def _send_json(self, status: str, value: Any, close: bool) -> None:
        body = json.dumps(value, separators=(",", ":")).encode()
        assert self.transport is not None
        self.transport.write(
            self._head(status, b"application/json; charset=utf-8",
                       b"Content-Length: %d\r\n" % len(body), close) + body)
        if close:
            self.closed = True
            self.transport.close()

    def _fail(self, status: int, message: str) -> None:
        phrase = {400: "Bad Request", 431: "Request Header Fields Too Large"}[status]
        self._send_json(f"{status} {phrase}", {"error": message}, close=True)

    def _answer(self, method: str, target: str, headers: dict[bytes, bytes], body: bytes) -> None:
        close = headers.get(b"connection", b"").lower() == b"close"
        path = target.split("?", 1)[0]
        if path in ("/api/generate", "/api/chat") and method == "POST":
            try:
                data = json.loads(body or b"{}")
            except ValueError:
                self._send_json("400 Bad Request", {"error": "invalid JSON"}, close)
                return
            chat = path == "/api/chat"
            model = str(data.get("model", "m"))
            options = data.get("options") or {}
            count = int(options.get("num_predict", self.chunks))
            if self.max_predict:
                count = min(count, self.max_predict)
            if data.get("stream", True) is False:
                text = "hello" if count == self.chunks else "".join(
                    f"t{i} " for i in range(count))
                self._send_json("200 OK", _piece(model, chat, text, True, count), close)
            else:
                self._stream(model, chat, count, close)
            return
        if path == "/api/version" and method == "GET":
            self._send_json("200 OK", {"version": "0.12.0"}, close)
            return
        if path == "/api/ps" and method == "GET":
            self._send_json("200 OK", {"models": [{"name": "m:latest", "model": "m:latest"}]},
                            close)
            return
        if path == "/" and method in ("GET", "HEAD"):
            assert self.transport is not None
            self.transport.write(self._head("200 OK", b"text/plain; charset=utf-8",
                                            b"Content-Length: 17\r\n", close)
                                 + (b"Ollama is running" if method == "GET" else b""))
            return
        self._send_json("404 Not Found", {"error": f"path {path} not found"}, close)

    def _stream(self, model: str, chat: bool, count: int, close: bool) -> None:
        assert self.transport is not None
        self.busy = True
        self.transport.write(self._head("200 OK", b"application/x-ndjson",
                                        b"Transfer-Encoding: chunked\r\n", close))
        start = self.loop.time()

        def send(index: int) -> None:
            self.timer = None
            if self.closed:
                return
            assert self.transport is not None
            done = index >= count - 1
            line = json.dumps(_piece(model, chat, "" if done else f"t{index} ", done, count),
                              separators=(",", ":")).encode() + b"\n"
            chunk = b"%x\r\n%s\r\n" % (len(line), line)
            if not done:
                self.transport.write(chunk)
                self.timer = self.loop.call_at(start + (index + 1) * self.pause, send,
                                               index + 1)
                return
            self.transport.write(chunk + b"0\r\n\r\n")
            self.busy = False
            if close:
                self.closed = True
                self.transport.close()
            elif self.buffer:
                self._process()

        send(0)


def _dechunk(buffer: bytes, position: int) -> tuple[bytes, int] | None:
    """Decode a chunked body starting at ``position``: (body, end) or None if incomplete."""
    pieces = []
    while True:
        line_end = buffer.find(b"\r\n", position)
        if line_end < 0:
            return None
        size = int(buffer[position:line_end].split(b";", 1)[0], 16)
        position = line_end + 2
        if size == 0:
            trailer_end = buffer.find(b"\r\n\r\n", position - 2)
            if trailer_end < 0:
                return None
            return b"".join(pieces), trailer_end + 4
        if len(buffer) < position + size + 2:
            return None
        pieces.append(buffer[position:position + size])
        position += size + 2


async def serve(host: str, port: int, chunks: int, pause: float, max_predict: int = 0) -> None:
    """Serve until SIGTERM or SIGINT; prints ``listening <port>`` when ready."""
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: UpstreamProtocol(chunks, pause, max_predict),
                                      host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening {bound}", flush=True)
    stop = loop.create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, lambda: stop.done() or stop.set_result(None))
    async with server:
        await stop


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--chunks", type=int, default=200,
                        help="lines in a streamed answer (default 200)")
    parser.add_argument("--pause-ms", type=float, default=5.0,
                        help="pause between streamed lines, in ms (default 5)")
    parser.add_argument("--max-predict", type=int, default=0,
                        help="most lines an answer gets whatever options.num_predict asks "
                             "(default 0: no cap)")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the benchmark upstream listens on loopback only")
    if args.max_predict < 0:
        parser.error("--max-predict cannot be negative")
    asyncio.run(serve(args.host, args.port, args.chunks, args.pause_ms / 1000.0,
                      args.max_predict))
    return 0


if __name__ == "__main__":
    sys.exit(main())
