"""What the roles' policy chain costs: the full chain of a ``roles`` section against token only.

One run starts the fast fake Ollama (``bench/fast_upstream.py``) and two runnergw processes
that share its certificate, signing keys and upstream and differ only in their policy:

* ``policy``: a ``roles`` section and a runner listing no filters, so it gets the default
  chain of a gateway with roles (``token, role, access, rateLimit, concurrency, usage,
  rewrite, audit``): a model check against the role's patterns, a per-minute rate and a
  concurrency limit (generous: nothing is refused, everything is evaluated), a daily token
  quota (large: leases, quota checks and the SQLite usage ledger run, nothing is refused),
  the audit trail written to a file;
* ``token``: no ``roles`` section and ``filters: [token]``, the least a runner can have (a
  gateway with roles refuses a chain without ``role`` and ``access``, hence two processes).

It then drives keep-alive HTTPS clients from this process (the load generator of
``gateway_bench.py``), each token carrying a ``sub`` and a ``role`` claim, and prints the
figures, the ratios and a PASS/FAIL line per goal:

* S1: non-streamed ``POST /api/generate``, 1 client and N clients, in rounds that alternate
  which gateway goes first; the goals are judged on the median of the rounds;
* 256 concurrent ``POST /api/chat`` NDJSON streams through each gateway, both at once (so
  that a shared machine's load weighs on both alike), usage counting on (``policy``) and off
  (``token``): the gateway's CPU per relayed line, from ``/proc``; then shorter streams, to
  split that cost into a part per request and a part per line.

The role has ``maxTokens``, so the usage filter writes a generation cap into every inference
request; the fake upstream never answers more than the bench's lines (``--max-predict``), so
both gateways relay the same answers.

All traffic stays on 127.0.0.1.  It is a benchmark, not a test: figures depend on the machine
and on whatever else runs on it.

Usage: ``python bench/policy_bench.py [--quick] [--rounds N] [--streams N] [--check]``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import select
import sqlite3
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gateway_bench as gb  # noqa: E402  (puts the repository on sys.path too)

from runnergw.config.runners import POLICY_FILTERS  # noqa: E402
from runnergw.filters.usage import LEASE_BLOCK  # noqa: E402
from runnergw.tokens.key_generation import write_signing_keypair  # noqa: E402
from runnergw.tokens.minting import mint_token  # noqa: E402
from runnergw.tokens.signing_keys import load_signing_key  # noqa: E402

HOST = gb.HOST
PREFIX = "/ollama"
ROLE = "member"
MODEL_PATTERNS = ["m", "m:*"]
"""The role's models: the bench asks for ``m`` (``m:latest`` once normalized)."""
REFUSED_BODY = b'{"model":"other","prompt":"hi","stream":false}'
"""A model outside the role's patterns: 403 from ``policy``, answered by ``token``."""

RATE_PER_MINUTE = 60_000_000
RATE_BURST = 1_000_000
CONCURRENCY = 1024
MAX_TOKENS = 4096
TOKENS_PER_DAY = 10**15
"""Generous limits: evaluated on every request, never reached."""

GOAL_THROUGHPUT_COST = 0.15
"""The full chain keeps at least 1 - this of the token-only throughput."""
GOAL_ADDED_P50_MS = 0.1
GOAL_COUNTING_US_PER_LINE = 10.0


# --------------------------------------------------------------------------------------------
# Set-up


def start_upstream(directory: Path, chunks: int, pause_ms: float
                   ) -> tuple[subprocess.Popen[bytes], int]:
    """The fake Ollama, whose answers never exceed ``chunks`` tokens: the generation cap the
    usage filter writes into each request (larger) leaves them as the token-only path gets
    them."""
    argv = [sys.executable, str(BENCH / "fast_upstream.py"), "--host", HOST, "--port", "0",
            "--chunks", str(chunks), "--pause-ms", str(pause_ms), "--max-predict", str(chunks)]
    process = gb.start_process(argv, directory / "upstream.log", directory,
                               stdout=subprocess.PIPE)
    assert process.stdout is not None
    deadline = time.monotonic() + 15
    line = b""
    while time.monotonic() < deadline and not line.endswith(b"\n"):
        ready, _, _ = select.select([process.stdout], [], [], 0.1)
        if ready:
            piece = os.read(process.stdout.fileno(), 256)
            if not piece:
                break
            line += piece
        elif process.poll() is not None:
            break
    if not line.startswith(b"listening "):
        gb.stop_process(process)
        raise RuntimeError("the fake upstream did not start:\n"
                           + gb.tail(directory / "upstream.log"))
    return process, int(line.split()[1])


def write_settings(directory: Path, upstream_port: int, ports: dict[str, int]
                   ) -> dict[str, Path]:
    """Certificate, signing keys and the two settings files; returns the paths."""
    paths = {name: directory / file for name, file in (
        ("cert", "gateway.pem"), ("key", "gateway.key"), ("signing", "paseto.key"),
        ("public", "paseto.pub"), ("audit", "audit.log"), ("ledger", "usage.sqlite"),
        ("policy", "policy.yaml"), ("token", "token.yaml"))}
    gb.write_self_signed(paths["cert"], paths["key"])
    write_signing_keypair(paths["signing"], paths["public"])

    def common(name: str) -> dict[str, object]:
        return {
            "logging": {"level": "info"},
            "paseto": {"version": "v4", "keyPath": str(paths["signing"]),
                       "publicPath": str(paths["public"])},
            "server": {"address": f"{HOST}:{ports[name]}",
                       "certificatePath": str(paths["cert"]), "keyPath": str(paths["key"])},
            "metrics": {"address": f"{HOST}:0"},  # never the default port of a real one
        }

    policy = {  # JSON is YAML
        **common("policy"),
        # No `filters`: a runner of a gateway with roles gets the whole policy chain.
        "runners": [{"name": "policy", "path": PREFIX, "host": f"{HOST}:{upstream_port}"}],
        "audit": {"path": str(paths["audit"])},
        "policy": {"defaultRole": ROLE, "timeZone": "UTC", "ledgerPath": str(paths["ledger"])},
        "roles": {ROLE: {
            "models": MODEL_PATTERNS, "api": ["inference", "catalogue"],
            "requestsPerMinute": RATE_PER_MINUTE, "burst": RATE_BURST,
            "concurrency": CONCURRENCY, "maxTokens": MAX_TOKENS,
            "tokensPerDay": TOKENS_PER_DAY}},
    }
    token = {
        **common("token"),
        "runners": [{"name": "token", "path": PREFIX, "host": f"{HOST}:{upstream_port}",
                     "filters": ["token"]}],
        "audit": {"path": ""},
    }
    for name, document in (("policy", policy), ("token", token)):
        paths[name].write_text(json.dumps(document, indent=2) + "\n")
    return paths


def probe(port: int, tls: ssl.SSLContext, token: str, body: bytes
          ) -> tuple[int, http.client.HTTPMessage, bytes]:
    """One request, to check what a gateway does before it is measured."""
    connection = http.client.HTTPSConnection(HOST, port, context=tls, timeout=10)
    try:
        connection.request("POST", f"{PREFIX}/api/generate", body=body, headers={
            "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.headers, response.read()
    finally:
        connection.close()


def check_chains(ports: dict[str, int], tls: ssl.SSLContext, token: str) -> None:
    """The policy chain is on where it should be, and only there."""
    status, headers, body = probe(ports["policy"], tls, token, gb.GENERATE_BODY)
    if status != 200 or headers.get("RateLimit-Limit") != str(RATE_BURST):
        raise RuntimeError(f"policy gateway: status {status}, RateLimit-Limit "
                           f"{headers.get('RateLimit-Limit')!r}: {body[:200]!r}")
    status, _, body = probe(ports["policy"], tls, token, REFUSED_BODY)
    if status != 403:
        raise RuntimeError(f"policy gateway: a model outside the role gave {status}, not 403: "
                           f"{body[:200]!r}")
    for request in (gb.GENERATE_BODY, REFUSED_BODY):
        status, headers, body = probe(ports["token"], tls, token, request)
        if status != 200 or "RateLimit-Limit" in headers:
            raise RuntimeError(f"token-only gateway: status {status}: {body[:200]!r}")


def read_ledger(path: Path) -> tuple[int, int, int]:
    """Requests, prompt tokens and generated tokens the ledger holds (after the gateway
    stopped, so that it wrote what it held)."""
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as connection:
        row = connection.execute("SELECT SUM(requests), SUM(prompt_tokens), "
                                 "SUM(completion_tokens) FROM usage").fetchone()
    return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)


# --------------------------------------------------------------------------------------------
# Cases


async def run_cases(args: argparse.Namespace, targets: dict[str, gb.Target],
                    meters: dict[str, gb.CpuMeter]
                    ) -> tuple[list[gb.Result], list[gb.Result], list[gb.Result]]:
    """S1 rounds (each alternating which gateway goes first), then stream rounds, then the
    short streams' rounds if asked."""
    s1 = await gb.s1_rounds(args, ("token", "policy"), targets, meters,
                            args.rounds if "s1" in args.cases else 0,
                            lambda index, _, result: report_progress(result, index))
    streams: list[gb.Result] = []
    short: list[gb.Result] = []
    if "streams" in args.cases:
        streams = await stream_case(args, targets, meters, "chat", args.chunks,
                                    args.stream_duration)
        if args.short_chunks:
            seconds = (args.short_chunks - 1) * args.pause_ms / 1000.0
            short = await stream_case(args, targets, meters, "chat-short", args.short_chunks,
                                      2 * seconds + 2.0)
    return s1, streams, short


async def stream_case(args: argparse.Namespace, targets: dict[str, gb.Target],
                      meters: dict[str, gb.CpuMeter], kind: str, chunks: int,
                      duration: float) -> list[gb.Result]:
    """``args.streams`` staggered streams of ``chunks`` lines through each gateway, in
    ``args.stream_rounds`` rounds."""
    body = gb.CHAT_BODY if chunks == args.chunks else (
        b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true,'
        b'"options":{"num_predict":%d}}' % chunks)
    stream_seconds = (chunks - 1) * args.pause_ms / 1000.0
    chat: dict[str, object] = {
        "path": "/api/chat", "body": body, "warmup": 0.0, "duration": duration,
        "skip_first": 1, "expect_lines": chunks, "stagger": stream_seconds / args.streams,
        "pace": args.pause_ms / 1000.0}
    found: list[gb.Result] = []
    for round_index in range(args.stream_rounds):
        if args.together:
            # Both at once: the same moments of a shared machine weigh on both alike.
            results = list(await asyncio.gather(*(
                gb.measure(kind, targets[name], args.streams, meter=meters[name],
                           **chat)  # type: ignore[arg-type]
                for name in ("token", "policy"))))
        else:
            order = ("token", "policy") if round_index % 2 == 0 else ("policy", "token")
            results = []
            for name in order:
                results.append(await gb.measure(kind, targets[name], args.streams,
                                                meter=meters[name],
                                                **chat))  # type: ignore[arg-type]
        for result in results:
            report_progress(result, round_index)
            found.append(result)
    return found


def report_progress(result: gb.Result, round_index: int) -> None:
    what = "req/s" if result.kind == "generate" else "streams/s"
    errors = f", {len(result.errors)} errors: {result.errors[0]}" if result.errors else ""
    print(f"  round {round_index + 1} {result.kind:<9} {result.target:<7} "
          f"x{result.clients:<4}{result.count:>7} done, {result.rate:9.1f} {what}, gateway "
          f"{result.cpu.get('gateway', float('nan')):.0f} % CPU{errors}", flush=True)


# --------------------------------------------------------------------------------------------
# Report


def _rounds(results: list[gb.Result], clients: int) -> list[dict[str, gb.Result]]:
    """The results of each round, by gateway (results come in round order, token/policy
    alternating first)."""
    wanted = [r for r in results if r.clients == clients]
    return [{r.target: r for r in wanted[i:i + 2]} for i in range(0, len(wanted), 2)]


def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


def _per_round(results: list[gb.Result], clients: int,
               figure: Callable[[gb.Result], float]) -> tuple[float, float, float]:
    """Median over the rounds of the figure for token, for policy, and of their difference."""
    rounds = _rounds(results, clients)
    return (_median([figure(r["token"]) for r in rounds]),
            _median([figure(r["policy"]) for r in rounds]),
            _median([figure(r["policy"]) - figure(r["token"]) for r in rounds]))


def _ratio(results: list[gb.Result], clients: int) -> float:
    return _median([r["policy"].rate / r["token"].rate if r["token"].rate else float("nan")
                    for r in _rounds(results, clients)])


def _cpu(result: gb.Result, name: str) -> str:
    value = result.cpu.get(name)
    return "n/a" if value is None else f"{value:.0f}"


def print_tables(s1: list[gb.Result], streams: list[gb.Result], short: list[gb.Result],
                 args: argparse.Namespace) -> None:
    if s1:
        print()
        print("S1: non-streamed POST /api/generate (stream:false), by round; CPU in % of one core")
        print(f"{'round':>5} {'chain':<7}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'gateway':>9}{'client':>8}{'upstream':>9}{'others':>8}{'us/req':>8}"
              f"{'errors':>7}")
        for clients in (1, args.clients):
            for index, pair in enumerate(_rounds(s1, clients)):
                for name in ("token", "policy"):
                    r = pair[name]
                    print(f"{index + 1:>5} {name:<7}{r.clients:>8}{r.rate:>9.0f}"
                          f"{gb._fmt(r.latency(50), 3):>9}{gb._fmt(r.latency(99), 3):>9}"
                          f"{_cpu(r, 'gateway'):>9}{_cpu(r, 'client'):>8}"
                          f"{_cpu(r, 'upstream'):>9}{_cpu(r, 'others'):>8}"
                          f"{gb._fmt(r.gateway_cpu_us, 0):>8}{len(r.errors):>7}")
        print()
        print(f"S1 summary (median of {args.rounds} round{'s' if args.rounds > 1 else ''}; "
              "ratio and added: median of the rounds' own)")
        print(f"{'clients':>7}{'token req/s':>13}{'policy req/s':>14}{'ratio':>7}"
              f"{'p50 token':>11}{'p50 policy':>12}{'added':>8}{'p99 token':>11}"
              f"{'p99 policy':>12}{'added':>8}{'CPU us/req token':>18}{'policy':>8}")
        for clients in (1, args.clients):
            rate_t, rate_p, _ = _per_round(s1, clients, lambda r: r.rate)
            p50_t, p50_p, p50_d = _per_round(s1, clients, lambda r: r.latency(50))
            p99_t, p99_p, p99_d = _per_round(s1, clients, lambda r: r.latency(99))
            cpu_t, cpu_p, _ = _per_round(s1, clients, lambda r: r.gateway_cpu_us)
            print(f"{clients:>7}{rate_t:>13.0f}{rate_p:>14.0f}{_ratio(s1, clients):>7.3f}"
                  f"{p50_t:>11.3f}{p50_p:>12.3f}{p50_d:>+8.3f}{p99_t:>11.3f}{p99_p:>12.3f}"
                  f"{p99_d:>+8.3f}{cpu_t:>18.0f}{cpu_p:>8.0f}")
    for found, chunks in ((streams, args.chunks), (short, args.short_chunks)):
        if not found:
            continue
        print()
        print(f"{args.streams} concurrent streams: POST /api/chat, {chunks} NDJSON lines "
              f"{args.pause_ms:g} ms apart, staggered, through "
              f"{'both gateways at once' if args.together else 'one gateway at a time'}; "
              "CPU in % of one core")
        print(f"{'round':>5} {'chain':<7}{'streams':>8}{'measured':>9}{'TTFC p50':>10}"
              f"{'TTFC p99':>10}{'total p50':>11}{'gateway':>9}{'peer':>6}{'client':>8}"
              f"{'upstream':>9}{'others':>8}{'us/line':>9}{'errors':>7}")
        for index, pair in enumerate(_rounds(found, args.streams)):
            for name in ("token", "policy"):
                r = pair[name]
                print(f"{index + 1:>5} {name:<7}{r.clients:>8}{r.count:>9}"
                      f"{gb._fmt(r.first(50), 3):>10}{gb._fmt(r.first(99), 3):>10}"
                      f"{gb._fmt(r.latency(50), 1):>11}{_cpu(r, 'gateway'):>9}"
                      f"{_cpu(r, 'peer'):>6}{_cpu(r, 'client'):>8}{_cpu(r, 'upstream'):>9}"
                      f"{_cpu(r, 'others'):>8}{gb._fmt(r.gateway_cpu_us, 1):>9}"
                      f"{len(r.errors):>7}")
    if streams:
        print("measured: streams after each connection's first; TTFC: request sent to first "
              "body byte; peer: the other gateway.")
    every = s1 + streams + short
    others = max((r.cpu.get("others", 0.0) for r in every), default=0.0)
    if others > 15:
        print(f"warning: other processes used up to {others:.0f} % of a core during a case; "
              "figures are disturbed (run again on a quiet machine)")
    for found, chunks in ((streams, args.chunks), (short, args.short_chunks)):
        schedule = (chunks - 1) * args.pause_ms
        late = [r.latency(50) / schedule - 1.0 for r in found if r.latencies_ms]
        if late and max(late) > 0.01:
            print(f"warning: {chunks}-line streams took up to {max(late) * 100:.1f} % longer than "
                  "the upstream's schedule: the machine was short of CPU, lines were read in "
                  "batches, and the CPU per line is lower than where the gateway keeps up")
    client = max((r.cpu.get("client", 0.0) for r in every), default=0.0)
    if client > 85:
        print(f"warning: the load generator used up to {client:.0f} % of a core: it may be "
              "what limits the figures")


def verdicts(s1: list[gb.Result], streams: list[gb.Result], short: list[gb.Result],
             args: argparse.Namespace) -> tuple[list[str], list[tuple[bool, str]]]:
    """INFO lines, then the goals."""
    notes: list[str] = []
    goals: list[tuple[bool, str]] = []
    request_cost = float("nan")
    if s1:
        floor = 1.0 - GOAL_THROUGHPUT_COST
        for clients in (args.clients, 1):
            rate_t, rate_p, _ = _per_round(s1, clients, lambda r: r.rate)
            ratio = _ratio(s1, clients)
            goals.append((ratio >= floor,
                          f"throughput, {clients} client{'s' if clients > 1 else ''}: full "
                          f"policy chain {rate_p:.0f} req/s = {ratio:.3f} of token only "
                          f"{rate_t:.0f} req/s, {(1 - ratio) * 100:.1f} % lost (goal <= "
                          f"{GOAL_THROUGHPUT_COST * 100:g} %)"))
        p50_t, p50_p, added = _per_round(s1, 1, lambda r: r.latency(50))
        goals.append((added <= GOAL_ADDED_P50_MS,
                      f"added p50 latency, 1 client: {added:+.3f} ms (policy {p50_p:.3f} ms, "
                      f"token only {p50_t:.3f} ms; goal <= {GOAL_ADDED_P50_MS:g} ms)"))
        for clients in (1, args.clients):
            _, _, p50_added = _per_round(s1, clients, lambda r: r.latency(50))
            p99_t, p99_p, p99_added = _per_round(s1, clients, lambda r: r.latency(99))
            notes.append(f"added latency, {clients} client{'s' if clients > 1 else ''}: p50 "
                         f"{p50_added:+.3f} ms, p99 {p99_added:+.3f} ms (p99 policy "
                         f"{p99_p:.3f} ms, token only {p99_t:.3f} ms)")
        for clients in (1, args.clients):
            cpu_t, cpu_p, cpu_d = _per_round(s1, clients, lambda r: r.gateway_cpu_us)
            if cpu_p == cpu_p and cpu_p:
                notes.append(f"gateway CPU per non-streamed request, {clients} client"
                             f"{'s' if clients > 1 else ''}: token only {cpu_t:.0f} us, policy "
                             f"{cpu_p:.0f} us ({cpu_d:+.0f} us; as a CPU-bound throughput "
                             f"ratio {cpu_t / cpu_p:.3f})")
                request_cost = cpu_d
    if streams:
        line_t, line_p, line_d = _per_round(streams, args.streams, lambda r: r.gateway_cpu_us)
        ttfc_t, ttfc_p, ttfc_d = _per_round(streams, args.streams, lambda r: r.first(50))
        notes.append(f"time to first chunk p50, {args.streams} streams: token only "
                     f"{ttfc_t:.3f} ms, policy {ttfc_p:.3f} ms ({ttfc_d:+.3f} ms)")
        if short:
            # CPU per line = per line + per request / lines: two stream lengths give both.
            n_long, n_short = args.chunks, args.short_chunks
            scale = 1.0 / n_short - 1.0 / n_long
            fit = {}
            for name in ("token", "policy"):
                long_line = _median([r.gateway_cpu_us for r in streams if r.target == name])
                short_line = _median([r.gateway_cpu_us for r in short if r.target == name])
                per_request = (short_line - long_line) / scale
                fit[name] = (per_request, long_line - per_request / n_long)
            notes.append(f"streams of {n_short} and {n_long} lines, gateway CPU split into per "
                         f"request + per line: token only {fit['token'][0]:.0f} us + "
                         f"{fit['token'][1]:.1f} us, policy {fit['policy'][0]:.0f} us + "
                         f"{fit['policy'][1]:.1f} us: the chain adds "
                         f"{fit['policy'][0] - fit['token'][0]:+.0f} us per stream and "
                         f"{fit['policy'][1] - fit['token'][1]:+.1f} us per line")
        elif request_cost == request_cost and line_d == line_d:
            spread = request_cost / args.chunks
            notes.append(f"of the {line_d:+.1f} us per line, about {spread:.1f} us is the "
                         f"chain's per-request work (S1: {request_cost:+.0f} us) spread over a "
                         f"stream's {args.chunks} lines, about {line_d - spread:.1f} us is per "
                         f"line (lines split and counted, a lease every {LEASE_BLOCK} lines; "
                         "--short-chunks 25 measures the split)")
        goals.append((line_d <= GOAL_COUNTING_US_PER_LINE,
                      f"usage counting, {args.streams} streams: gateway CPU {line_p:.1f} us per "
                      f"relayed line counted, {line_t:.1f} us not counted: {line_d:+.1f} us per "
                      f"line (goal <= {GOAL_COUNTING_US_PER_LINE:g} us)"))
    return notes, goals


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure the roles' policy chain of runnergw against the token check alone.")
    parser.add_argument("--quick", action="store_true",
                        help="one round of each, short cases (under a minute in all)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="S1 rounds, each measuring both gateways (default 3, --quick 1)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds measured per S1 case (default 4, --quick 1.5)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="warm-up seconds before each S1 case (default 1, --quick 0.5)")
    parser.add_argument("--clients", type=int, default=16,
                        help="clients of the loaded S1 case (default 16)")
    parser.add_argument("--streams", type=int, default=256,
                        help="concurrent streams (default 256)")
    parser.add_argument("--stream-rounds", type=int, default=None,
                        help="stream rounds, each measuring both gateways (default 2, --quick 1)")
    parser.add_argument("--stream-duration", type=float, default=None,
                        help="seconds during which new streams are started (each connection's "
                             "first stream is warm-up; default: two streams' time and 2 s, "
                             "so that every connection has a measured stream; --quick: one "
                             "stream's time and 2 s)")
    parser.add_argument("--chunks", type=int, default=100,
                        help="NDJSON lines per stream, the done line included (default 100)")
    parser.add_argument("--pause-ms", type=float, default=40.0,
                        help="upstream pause between lines, ms (default 40: 256 streams make "
                             "6400 lines/s)")
    parser.add_argument("--together", action=argparse.BooleanOptionalAction, default=True,
                        help="relay the streams through both gateways at the same time, each "
                             "its own N streams (default), or one gateway after the other")
    parser.add_argument("--short-chunks", type=int, default=25,
                        help="then relay streams of this many lines, to split the cost per line "
                             "into a part per request and a part per line (default 25; 0: not "
                             "done)")
    parser.add_argument("--cases", default="s1,streams",
                        help="what to run: s1, streams or both (default s1,streams)")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the policy gateway with py-spy during the run (FILE.svg "
                             "a flame graph, FILE.json speedscope, else collapsed stacks)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a goal is missed")
    args = parser.parse_args(argv)
    for name, full, quick in (("rounds", 3, 1), ("duration", 4.0, 1.5), ("warmup", 1.0, 0.5),
                              ("stream_rounds", 2, 1)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    stream_seconds = (args.chunks - 1) * args.pause_ms / 1000.0
    if args.stream_duration is None:
        args.stream_duration = stream_seconds + (2.0 if args.quick else stream_seconds + 2.0)
    args.cases = {case.strip() for case in args.cases.split(",") if case.strip()}
    if not args.cases or not args.cases <= {"s1", "streams"}:
        parser.error("--cases: s1, streams or s1,streams")
    if (args.rounds < 1 or args.stream_rounds < 1 or args.duration <= 0 or args.warmup < 0
            or args.clients < 1 or args.streams < 1 or args.chunks < 2
            or args.stream_duration <= 0 or args.pause_ms <= 0):
        parser.error("rounds, durations, clients, streams, chunks (>= 2) and the pause must "
                     "be positive")
    if args.short_chunks and not 2 <= args.short_chunks < args.chunks:
        parser.error("--short-chunks: at least 2 and fewer than --chunks")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    upstream = profiler = None
    gateways: dict[str, subprocess.Popen[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="runnergw-policy-bench-") as temporary:
        directory = Path(temporary)
        try:
            upstream, upstream_port = start_upstream(directory, args.chunks, args.pause_ms)
            ports = {"policy": gb.free_port(), "token": gb.free_port()}
            paths = write_settings(directory, upstream_port, ports)
            for name in ("policy", "token"):
                home = directory / name  # its own log and working directory
                home.mkdir()
                gateways[name] = gb.start_gateway(home, paths[name], ports[name])
            signing = load_signing_key(paths["signing"].read_bytes(), 4)
            subjects = max(args.clients, 1)
            tokens = [mint_token(signing, subject=f"bench-{i}", role=ROLE, lifetime=3600.0,
                                 now=time.time()) for i in range(subjects)]
            tls = ssl.create_default_context(cafile=str(paths["cert"]))
            tls.set_alpn_protocols(["http/1.1"])
            check_chains(ports, tls, tokens[0])
            targets = {name: gb.Target(name, ports[name], tls, PREFIX, tokens)
                       for name in ("token", "policy")}
            peer = {"token": "policy", "policy": "token"}
            meters = {name: gb.CpuMeter({"gateway": gateways[name].pid,
                                         "peer": gateways[peer[name]].pid,
                                         "upstream": upstream.pid, "client": os.getpid()})
                      for name in ("token", "policy")}
            print(f"runnergw policy bench: python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs; policy gateway pid {gateways['policy'].pid} "
                  f"(chain {', '.join(POLICY_FILTERS)}), token-only gateway pid "
                  f"{gateways['token'].pid} (chain token), upstream pid {upstream.pid}; "
                  f"{subjects} subjects of role {ROLE!r}", flush=True)
            if args.profile:
                profiler = gb.start_profiler(gateways["policy"].pid, args.profile, directory)
            s1, streams, short = asyncio.run(run_cases(args, targets, meters))
            if profiler is not None:
                gb.stop_profiler(profiler, directory)
                profiler = None
            for name, process in gateways.items():
                if process.poll() is not None:
                    raise RuntimeError(f"the {name} gateway died during the run:\n"
                                       + gb.tail(directory / name / "gateway.log"))
            gb.stop_process(gateways.pop("policy"))  # the ledger is written as it stops
            ledger = read_ledger(paths["ledger"])
            audit_lines = sum(1 for _ in open(paths["audit"], "rb"))
        except Exception as e:  # noqa: BLE001 - report and clean up
            print(f"bench failed: {e}", file=sys.stderr)
            return 2
        finally:
            if profiler is not None:
                gb.stop_profiler(profiler, directory)
            for process in gateways.values():
                gb.stop_process(process)
            gb.stop_process(upstream)
    print_tables(s1, streams, short, args)
    every = s1 + streams + short
    measured = sum(r.count for r in every if r.target == "policy")
    print(f"\npolicy gateway: {audit_lines} audit lines; usage ledger: {ledger[0]} requests, "
          f"{ledger[1]} prompt + {ledger[2]} generated tokens (>= {measured} measured "
          f"requests, warm-up and checks included)")
    notes, goals = verdicts(s1, streams, short, args)
    return gb.report(notes, goals, sum(len(r.errors) for r in every), began, args.check)


if __name__ == "__main__":
    sys.exit(main())
