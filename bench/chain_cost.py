"""What each policy filter costs in CPU, per request and per streamed line, without a server.

``policy_bench.py`` measures the whole gateway, with its sockets, TLS and a machine shared
with the load generator; this script times the same chain in this process, with the harness
filter tests use (``runnergw.testing.run_filters``: the real chain runner, body collection and
answer observation, between a recording client and a canned runner). It builds the policy
chain one filter at a time (``role``, then ``access``, ``rateLimit``, ``concurrency``,
``usage``, ``rewrite``, ``audit``), from the settings ``policy_bench.py`` writes, and for each
prefix of the chain times:

* a non-streamed ``POST /api/generate`` (a whole JSON answer);
* a streamed ``POST /api/chat`` of 1 line and of ``--lines`` lines (NDJSON, compact as Ollama
  writes it, one write per line): the difference, divided by the extra lines, is the cost of
  one relayed line.

Each figure is the best of ``--repeats`` runs of the mean over ``--requests`` exchanges; the
cost of a filter is what its prefix adds to the one before. The token filter (common to both
gateways of ``policy_bench.py``) is left out: exchanges arrive with an identity. The usage
ledger aggregates in memory (its thread and file are not started, as in the reactor thread);
the audit trail is written to a temporary file.

Usage: ``python bench/chain_cost.py [--quick]``.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gateway_bench as gb  # noqa: E402  (puts the repository on sys.path too)
import policy_bench as pb  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from runnergw.audit_log import AuditLog  # noqa: E402
from runnergw.config.load import load_settings  # noqa: E402
from runnergw.config.reader import ErrorSink  # noqa: E402
from runnergw.config.runners import POLICY_FILTERS  # noqa: E402
from runnergw.filters.registry import FilterContext, build_filter  # noqa: E402
from runnergw.limits.days import QuotaDays  # noqa: E402
from runnergw.limits.local import LocalLimitState  # noqa: E402
from runnergw.limits.parts import LimitParts  # noqa: E402
from runnergw.testing import Answer, make_exchange, run_filters  # noqa: E402
from runnergw.usage.ledger import UsageLedger  # noqa: E402

STEPS = tuple(name for name in POLICY_FILTERS if name != "token")


def ndjson_answer(lines: int) -> Answer:
    """A streamed chat answer of ``lines`` compact lines, ``done`` last with the counts."""
    chunks = []
    for index in range(lines):
        done = index == lines - 1
        piece: dict[str, Any] = {"model": "m", "created_at": "2025-01-01T00:00:00Z",
                                 "message": {"role": "assistant",
                                             "content": "" if done else f"t{index} "},
                                 "done": done}
        if done:
            piece.update({"done_reason": "stop", "prompt_eval_count": 5,
                          "eval_count": lines})
        chunks.append(json.dumps(piece, separators=(",", ":")).encode() + b"\n")
    return Answer(200, (("Content-Type", "application/x-ndjson"),), chunks, streamed=True)


GENERATE_ANSWER = Answer.json({"model": "m", "created_at": "2025-01-01T00:00:00Z",
                               "response": "hello", "done": True, "done_reason": "stop",
                               "prompt_eval_count": 5, "eval_count": 100})


def build_filters(directory: Path, names: Sequence[str]) -> list[Any]:
    """The named filters of the policy chain, as the gateway builds them."""
    paths = pb.write_settings(directory, 1, {"policy": 2, "token": 3})
    settings = load_settings(str(paths["policy"]))
    clock = Clock()
    clock.advance(time.time())
    limits = LimitParts(LocalLimitState(clock), QuotaDays(settings.policy.zone, clock), None)
    limits.ledger = UsageLedger(str(paths["ledger"]), clock)  # aggregates; never written
    context = FilterContext(settings=settings, clock=clock,
                            audit_log=AuditLog(str(paths["audit"])), limits=limits,
                            route=settings.runners[0])
    sink = ErrorSink()  # one at a time: the chain's order check wants the token filter
    filters = [build_filter(spec, context, sink) for spec in settings.runners[0].filters
               if spec.name in names]
    if sink.errors:
        raise RuntimeError("; ".join(str(error) for error in sink.errors))
    return filters


def time_exchanges(filters: list[Any], path: str, body: bytes, answer: Answer,
                   requests: int, repeats: int) -> float:
    """Best mean microseconds per exchange."""
    def one(index: int) -> None:
        exchange = make_exchange("POST", path, headers=(
            ("Host", "gateway.test"), ("Content-Type", "application/json")),
            body=body, subject=f"bench-{index % 16}")
        done = run_filters(filters, exchange, answer)
        run = done.result  # everything answers at once here
        if run.status != 200:
            raise RuntimeError(f"{path} gave {run.status}: {run.body[:200]!r}")

    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        started = time.perf_counter()
        for index in range(requests):
            one(index)
        best = min(best, (time.perf_counter() - started) / requests * 1e6)
    return best


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="fewer exchanges and repeats")
    parser.add_argument("--requests", type=int, default=None,
                        help="exchanges per timing (default 2000, --quick 400)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timings of which the best counts (default 5, --quick 3)")
    parser.add_argument("--lines", type=int, default=101,
                        help="lines of the long stream (default 101)")
    args = parser.parse_args(argv)
    requests = args.requests or (400 if args.quick else 2000)
    repeats = args.repeats or (3 if args.quick else 5)
    line_requests = max(requests // 10, 20)
    stream_long = ndjson_answer(args.lines)
    stream_short = ndjson_answer(1)
    rows: list[tuple[str, float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="runnergw-chain-cost-") as temporary:
        for count in range(len(STEPS) + 1):
            names = STEPS[:count]
            directory = Path(temporary) / str(count)
            directory.mkdir()
            filters = build_filters(directory, names)
            timing: Callable[..., float] = time_exchanges
            generate = timing(filters, "/api/generate", gb.GENERATE_BODY, GENERATE_ANSWER,
                              requests, repeats)
            short = timing(filters, "/api/chat", gb.CHAT_BODY, stream_short, requests, repeats)
            long = timing(filters, "/api/chat", gb.CHAT_BODY, stream_long, line_requests,
                          repeats)
            per_line = (long - short) / (args.lines - 1)
            label = "+".join(names) if names else "(no filter)"
            rows.append((label, generate, short, per_line))
            print(f"  {label}: {generate:.1f} us per generate, {per_line:.2f} us per line",
                  flush=True)
    print()
    print("Chain prefix (cumulative)" + " " * 40 + f"{'generate':>10}{'added':>8}"
          f"{'stream':>9}{'added':>8}{'per line':>10}{'added':>8}")
    previous: tuple[str, float, float, float] | None = None
    for row in rows:
        label, generate, short, per_line = row
        shown = label if len(label) <= 63 else "..." + label[-60:]
        added = ("", "", "") if previous is None else (
            f"{generate - previous[1]:+8.1f}", f"{short - previous[2]:+8.1f}",
            f"{per_line - previous[3]:+8.2f}")
        print(f"{shown:<65}{generate:>10.1f}{added[0]:>8}{short:>9.1f}{added[1]:>8}"
              f"{per_line:>10.2f}{added[2]:>8}")
        previous = row
    first, last = rows[0], rows[-1]
    print(f"\nwhole policy chain (without token): {last[1] - first[1]:+.1f} us per non-streamed "
          f"request, {last[2] - first[2]:+.1f} us per stream request, "
          f"{last[3] - first[3]:+.2f} us per relayed line (in this process; microseconds of "
          "one core, harness overhead subtracted)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
