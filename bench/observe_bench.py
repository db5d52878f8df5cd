"""What observing a streamed answer costs per relayed line, in this process.

``policy_bench.py`` measures the cost of usage counting in a whole gateway, with sockets, TLS
and a shared machine; this script times only the part that differs: the chain's client
relaying NDJSON lines that the usage filter observes. It builds the policy chain as
``chain_cost.py`` does (``role``, ``access``, ``rateLimit``, ``concurrency``, ``usage``,
``rewrite``, ``audit``, from the settings ``policy_bench.py`` writes: the real ``UsageFilter``
with a daily quota, leasing 16 tokens every 16 lines from the local limit state), starts a
``POST /api/chat`` exchange through it to a runner that sends its head and then waits, and
writes Ollama's compact chat lines (``"done":false``) into the chain's client, timing the
writes. The client behind it drops what it is given, so the figures are the chain's alone.

Cases, each with and without observation (the same chain without ``usage``, so nobody
observes the answer and the chain relays each write as it is):

* ``1 line/write``: one line per write, as Ollama sends tokens and the gateway reads them;
* ``100 lines/write``: 100 lines per write, as reads that caught up with a backlog;
* ``100 lines, split``: the same bytes in writes cut mid-line (the general path).

``hook alone`` is ``UsageFilter.response_line`` called directly on the same lines: the part
of the observed cost that is the filter's own work. Each figure is the best of ``--repeats``
timings of the mean per line, in microseconds of one core.

Usage: ``python bench/observe_bench.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import chain_cost as cc  # noqa: E402  (puts the repository on sys.path too)
import gateway_bench as gb  # noqa: E402
from twisted.internet.defer import Deferred  # noqa: E402

from runnergw.chain.exchange import Exchange  # noqa: E402
from runnergw.chain.route import Route, Router  # noqa: E402
from runnergw.chain.runner import ChainRunner  # noqa: E402
from runnergw.http.headers import Headers  # noqa: E402
from runnergw.testing import RecordingClient, make_exchange  # noqa: E402

NDJSON = (("Content-Type", "application/x-ndjson"),)


class _SinkClient(RecordingClient):
    """The client: keeps nothing of the body but its length."""

    size = 0

    def write(self, data: bytes) -> None:
        self.size += len(data)


class _HoldingTerminal:
    """Sends a streamed NDJSON head, hands the chain's client out, and waits."""

    stores_body = False

    def __init__(self) -> None:
        self.client: Any = None
        self.release: Deferred[None] = Deferred()

    async def handle(self, exchange: Exchange, client: Any) -> None:
        client.send_head(200, Headers(NDJSON), None)
        self.client = client
        await self.release
        client.finish()

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


def chat_line(index: int) -> bytes:
    """One compact streamed chat line, as Ollama writes it."""
    return json.dumps({"model": "m", "created_at": "2025-01-01T00:00:00.000000Z",
                       "message": {"role": "assistant", "content": f"t{index} "},
                       "done": False}, separators=(",", ":")).encode() + b"\n"


def open_stream(filters: list[Any], index: int) -> tuple[Any, _HoldingTerminal, Deferred[None]]:
    """A chat exchange through ``filters`` whose answer is under way: its chain client."""
    terminal = _HoldingTerminal()
    exchange = make_exchange("POST", "/api/chat", headers=(
        ("Host", "gateway.test"), ("Content-Type", "application/json")),
        body=gb.CHAT_BODY, subject=f"bench-{index % 16}")
    client = _SinkClient(exchange.notes.pop("test_body", b""))
    route = Route("bench", (), tuple(filters), terminal, max_body_size=1 << 30)
    done = ChainRunner(Router([route], Route("", (), (), None))).serve(exchange, client)
    if terminal.client is None or client.status != 200:
        raise RuntimeError(f"the stream did not start: {client.status} {client.body!r}")
    return terminal.client, terminal, done


def time_writes(filters: list[Any], writes: Sequence[bytes], lines: int, streams: int,
                repeats: int, observed: bool) -> float:
    """Best mean microseconds per line of ``writes`` (``lines`` lines) into fresh streams."""
    best = float("inf")
    for repeat in range(repeats):
        opened = [open_stream(filters, repeat * streams + index) for index in range(streams)]
        if observed != (opened[0][0]._observed is not None):
            raise RuntimeError("the answer is not observed as the case wants")
        gc.collect()
        started = time.perf_counter()
        for chain_client, _, _ in opened:
            write = chain_client.write
            for data in writes:
                write(data)
        elapsed = time.perf_counter() - started
        best = min(best, elapsed / (streams * lines) * 1e6)
        for chain_client, terminal, done in opened:
            if chain_client.gone:
                raise RuntimeError("the chain ended the answer")
            terminal.release.callback(None)
            if not done.called:
                raise RuntimeError("the exchange did not end")
    return best


def time_hook(filters: list[Any], lines: Sequence[bytes], streams: int, repeats: int) -> float:
    """Best mean microseconds of the usage filter's ``response_line`` per line."""
    usage = next(f for f in filters if type(f).__name__ == "UsageFilter")
    best = float("inf")
    for repeat in range(repeats):
        opened = [open_stream(filters, repeat * streams + index) for index in range(streams)]
        gc.collect()
        started = time.perf_counter()
        for chain_client, _, _ in opened:
            hook, exchange = usage.response_line, chain_client.exchange
            for line in lines:
                hook(exchange, line)
        elapsed = time.perf_counter() - started
        best = min(best, elapsed / (streams * len(lines)) * 1e6)
        for _, terminal, _ in opened:
            terminal.release.callback(None)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer streams and repeats")
    parser.add_argument("--streams", type=int, default=None,
                        help="streams per timing (default 200, --quick 50)")
    parser.add_argument("--lines", type=int, default=400, help="lines per stream")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timings of which the best counts (default 7, --quick 3)")
    args = parser.parse_args(argv)
    streams = args.streams or (50 if args.quick else 200)
    repeats = args.repeats or (3 if args.quick else 7)
    lines = [chat_line(index) for index in range(args.lines)]
    batches = [b"".join(lines[start:start + 100]) for start in range(0, len(lines), 100)]
    whole = b"".join(lines)
    cut = [whole[start:start + 4000] for start in range(0, len(whole), 4000)]
    cases = (("1 line/write", lines), ("100 lines/write", batches),
             ("100 lines, split", cut))
    with tempfile.TemporaryDirectory(prefix="runnergw-observe-bench-") as temporary:
        for name in ("observed", "plain"):
            (Path(temporary) / name).mkdir()
        observed_filters = cc.build_filters(Path(temporary) / "observed", cc.STEPS)
        plain_filters = cc.build_filters(Path(temporary) / "plain",
                                         tuple(step for step in cc.STEPS if step != "usage"))
        print(f"{'case':<20}{'unobserved':>12}{'observed':>10}{'added':>8}  "
              "(us per line)")
        for label, writes in cases:
            plain = time_writes(plain_filters, writes, len(lines), streams, repeats, False)
            observed = time_writes(observed_filters, writes, len(lines), streams, repeats,
                                   True)
            print(f"{label:<20}{plain:>12.3f}{observed:>10.3f}{observed - plain:>8.3f}",
                  flush=True)
        hook = time_hook(observed_filters, [line[:-1] for line in lines], streams, repeats)
        print(f"{'hook alone':<20}{'':>12}{hook:>10.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
