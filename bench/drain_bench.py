"""What a SIGTERM costs the clients of a gateway that drains.

One run starts the fast fake Ollama (``bench/fast_upstream.py``) and, per case, a runnergw
process (plain HTTP on 127.0.0.1, ``filters: [token]``) with its own ``shutdown`` settings. It
opens N concurrent ``POST /api/chat`` NDJSON streams, sends SIGTERM once every stream has its
first line, and sorts how each stream ended:

* ``complete``: its last line is the upstream's ``done: true`` and the chunked answer ended;
* ``final error``: its last line is the gateway's ``{"error": …}`` and the answer ended;
* ``broken``: anything else (a connection dropped, a line cut, no chunked end).

Cases:

* ``inside grace``: streams of about 1 s, a grace of 10 s: every stream should complete and
  the process exit 0, soon after the last stream (the figure: exit time after the last
  stream's end);
* ``cut``: streams of about 20 s, a grace of 1 s: every stream should end with a final error
  line and the process exit 1, soon after delay + grace (the figure: exit time after
  delay + grace);
* ``delay``: during the readiness delay a client keeps opening new connections and asking
  ``POST /api/generate``: none of those sent during the delay should fail (the load
  balancer's window).

The baseline is the drain's own schedule (the configured delay and grace); the figures are
how far after it the gateway exits. It is a benchmark, not a test: it prints figures and a
PASS/FAIL line per goal. All traffic stays on 127.0.0.1.

Usage: ``python bench/drain_bench.py [--streams N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gateway_bench as gb  # noqa: E402  (puts the repository on sys.path too)

from runnergw.tokens.key_generation import write_signing_keypair  # noqa: E402
from runnergw.tokens.minting import mint_token  # noqa: E402
from runnergw.tokens.signing_keys import load_signing_key  # noqa: E402

HOST = gb.HOST
PAUSE_MS = 5.0
GOAL_EXIT_AFTER_SCHEDULE_S = 1.0
"""The gateway exits within this of its schedule (last stream's end, or delay + grace)."""


class Stream:
    """One request on a connection of its own; the answer read to its end."""

    def __init__(self, port: int, token: str, path: str, body: bytes,
                 close: bool = False) -> None:
        self.port = port
        connection = "Connection: close\r\n" if close else ""
        self.request = (f"POST {path} HTTP/1.1\r\nHost: gw\r\n{connection}"
                        f"Authorization: Bearer {token}\r\n"
                        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                        ).encode() + body
        self.data = b""
        self.first_line = asyncio.get_event_loop().create_future()
        self.ended_at = 0.0

    async def run(self) -> None:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        writer.write(self.request)
        try:
            while True:
                piece = await reader.read(65536)
                if not piece:
                    break
                self.data += piece
                if not self.first_line.done() and b'"done":false' in self.data:
                    self.first_line.set_result(None)
                if self.data.endswith(b"\r\n0\r\n\r\n"):
                    break
        except ConnectionError:
            pass
        finally:
            self.ended_at = time.monotonic()
            writer.close()
            if not self.first_line.done():
                self.first_line.set_result(None)

    def outcome(self) -> str:
        """``complete``, ``final error`` or ``broken``."""
        head, _, body = self.data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            return "broken"
        content, ended = b"", False
        while body:
            size_text, _, rest = body.partition(b"\r\n")
            try:
                size = int(size_text, 16)
            except ValueError:
                return "broken"
            if size == 0:
                ended = True
                break
            content, body = content + rest[:size], rest[size + 2:]
        try:
            lines = [json.loads(line) for line in content.splitlines()]
        except ValueError:
            return "broken"
        if not ended or not lines:
            return "broken"
        if lines[-1].get("done") is True:
            return "complete"
        return "final error" if set(lines[-1]) == {"error"} else "broken"


def write_settings(directory: Path, upstream_port: int, port: int, delay: float,
                   grace: float) -> Path:
    settings = directory / f"settings-{port}.yaml"
    settings.write_text(json.dumps({
        "logging": {"level": "info"},
        "paseto": {"version": "v4", "keyPath": str(directory / "paseto.key"),
                   "publicPath": str(directory / "paseto.pub")},
        "server": {"address": f"{HOST}:{port}"},
        "metrics": {"address": f"{HOST}:0"},
        "runners": [{"name": "bench", "path": "/", "host": f"{HOST}:{upstream_port}",
                     "filters": ["token"]}],
        "audit": {"path": ""},
        "shutdown": {"readinessDelay": delay, "grace": grace},
    }) + "\n")
    return settings


async def drain_case(directory: Path, upstream_port: int, token: str, streams: int,
                     chunks: int, delay: float, grace: float) -> dict[str, Any]:
    """Start a gateway, open the streams, SIGTERM it, and sort the endings."""
    port = gb.free_port()
    process = gb.start_gateway(directory, write_settings(directory, upstream_port, port,
                                                         delay, grace), port)
    try:
        body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "hi"}],
                           "options": {"num_predict": chunks}}).encode()
        clients = [Stream(port, token, "/api/chat", body) for _ in range(streams)]
        tasks = [asyncio.ensure_future(client.run()) for client in clients]
        await asyncio.gather(*(client.first_line for client in clients))
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        late = asyncio.ensure_future(late_requests(port, token, signalled + delay))
        await asyncio.gather(*tasks)
        code = await asyncio.get_event_loop().run_in_executor(None, process.wait, 60)
        exited = time.monotonic()
        served, failed = await late
    finally:
        gb.stop_process(process)
    outcomes = [client.outcome() for client in clients]
    return {"outcomes": {name: outcomes.count(name)
                         for name in ("complete", "final error", "broken")},
            "code": code, "exit_after_signal": exited - signalled,
            "last_stream_after_signal": max(c.ended_at for c in clients) - signalled,
            "late_served": served, "late_failed": failed}


async def late_requests(port: int, token: str, delay_ends: float) -> tuple[int, int]:
    """New connections, one request each, back to back until the delay is over: how many
    were served and how many failed."""
    body = json.dumps({"model": "m", "prompt": "hi", "stream": False}).encode()
    served = failed = 0
    while time.monotonic() < delay_ends - 0.05:  # what is sent in the delay, with a margin
        client = Stream(port, token, "/api/generate", body, close=True)
        try:
            await asyncio.wait_for(client.run(), 5)
        except (OSError, asyncio.TimeoutError):
            failed += 1
            continue
        if client.data.startswith(b"HTTP/1.1 200"):
            served += 1
        else:
            failed += 1
    return served, failed


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=64, help="concurrent streams (64)")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace, directory: Path) -> int:
    write_signing_keypair(directory / "paseto.key", directory / "paseto.pub")
    key = load_signing_key((directory / "paseto.key").read_bytes(), 4)
    token = mint_token(key, subject="bench", role=None, lifetime=3600, now=time.time(),
                       extra={})
    upstream, upstream_port = gb.start_upstream(directory, 4000, PAUSE_MS)
    try:
        inside = await drain_case(directory, upstream_port, token, args.streams,
                                  chunks=200, delay=0.5, grace=10.0)
        cut = await drain_case(directory, upstream_port, token, args.streams,
                               chunks=4000, delay=0.5, grace=1.0)
        delay = await drain_case(directory, upstream_port, token, 1,
                                 chunks=4000, delay=2.0, grace=0.5)
    finally:
        gb.stop_process(upstream)
    print(f"{args.streams} concurrent /api/chat streams, lines {PAUSE_MS:g} ms apart")
    print(f"{'case':<14}{'complete':>10}{'final error':>13}{'broken':>8}{'exit':>6}"
          f"{'exit after SIGTERM':>20}{'schedule':>10}")
    rows = (("inside grace", inside, inside["last_stream_after_signal"]),
            ("cut", cut, 0.5 + 1.0))
    for name, result, schedule in rows:
        counts = result["outcomes"]
        print(f"{name:<14}{counts['complete']:>10}{counts['final error']:>13}"
              f"{counts['broken']:>8}{result['code']:>6}"
              f"{result['exit_after_signal']:>19.2f}s{schedule:>9.2f}s")
    print(f"delay (2 s): {delay['late_served']} new requests served during the readiness "
          f"delay, {delay['late_failed']} failed")
    goals = [
        (inside["outcomes"]["complete"] == args.streams and inside["code"] == 0,
         "inside grace: every stream complete, exit 0"),
        (inside["exit_after_signal"] - inside["last_stream_after_signal"]
         < GOAL_EXIT_AFTER_SCHEDULE_S,
         f"inside grace: exit within {GOAL_EXIT_AFTER_SCHEDULE_S:g} s of the last stream"),
        (cut["outcomes"]["final error"] == args.streams and cut["code"] == 1,
         "cut: every stream ends with a final error line, exit 1"),
        (cut["exit_after_signal"] - 1.5 < GOAL_EXIT_AFTER_SCHEDULE_S,
         f"cut: exit within {GOAL_EXIT_AFTER_SCHEDULE_S:g} s of delay + grace"),
        (delay["late_failed"] == 0 and delay["late_served"] > 0,
         "delay: no new request refused while draining had not begun"),
    ]
    for passed, text in goals:
        print(f"{'PASS' if passed else 'FAIL'}: {text}")
    return 0 if all(passed for passed, _ in goals) else 1


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="drain-bench-") as name:
        return asyncio.run(run(args, Path(name)))


if __name__ == "__main__":
    sys.exit(main())
