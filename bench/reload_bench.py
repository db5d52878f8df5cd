"""Reloads under load: S1 through the policy chain while the settings are reloaded every second.

One run starts the fast fake Ollama (``bench/fast_upstream.py``) and one runnergw process
with the settings of ``policy_bench.py``'s ``policy`` gateway (a ``roles`` section, the whole
policy chain, the audit trail and the usage ledger), then measures S1 (non-streamed
``POST /api/generate`` from N keep-alive HTTPS clients) in rounds that alternate:

* ``steady``: no reload;
* ``reloading``: every ``--interval`` seconds the settings file is rewritten (the role's
  ``maxTokens`` and a request header the runner sets change each time, so every reload builds
  new routes) and the gateway gets SIGHUP.

It prints, per round and in sum, the requests answered, the failed requests (any answer but
200, a connection cut: the goal is 0), the throughput and its ratio to the steady rounds, and
the reloads the gateway's log reports as done and as refused.

All traffic stays on 127.0.0.1. It is a benchmark, not a test: figures depend on the machine.

Usage: ``python bench/reload_bench.py [--quick] [--rounds N] [--duration S] [--check]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gateway_bench as gb  # noqa: E402  (puts the repository on sys.path too)
import policy_bench as pb  # noqa: E402

from runnergw.tokens.minting import mint_token  # noqa: E402
from runnergw.tokens.signing_keys import load_signing_key  # noqa: E402

GOAL_FAILURES = 0
GOAL_THROUGHPUT_RATIO = 0.9
"""Reloading every second keeps at least this share of the steady throughput."""


class Reloads:
    """Rewrites the settings and sends SIGHUP every ``interval`` seconds while running."""

    def __init__(self, settings: Path, pid: int, interval: float) -> None:
        self.settings = settings
        self.document = json.loads(settings.read_text())
        self.pid = pid
        self.interval = interval
        self.sent = 0

    def send_one(self) -> None:
        self.sent += 1
        role = self.document["roles"][pb.ROLE]
        role["maxTokens"] = pb.MAX_TOKENS - self.sent % 2
        self.document["runners"][0]["rewrite"] = {
            "setHeaders": {"X-Settings-Generation": str(self.sent)}}
        temporary = self.settings.with_suffix(".tmp")
        temporary.write_text(json.dumps(self.document, indent=2) + "\n")
        temporary.replace(self.settings)  # the gateway never reads half a file
        os.kill(self.pid, signal.SIGHUP)

    async def run(self, seconds: float) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + seconds
        while loop.time() + self.interval <= end:
            await asyncio.sleep(self.interval)
            self.send_one()


def count_log(path: Path, text: str) -> int:
    """Lines of the gateway's log holding ``text``."""
    with open(path, "rb") as stream:
        return sum(1 for line in stream if text.encode() in line)


async def run_rounds(args: argparse.Namespace, target: gb.Target, reloads: Reloads
                     ) -> dict[str, list[gb.Result]]:
    generate: dict[str, object] = {"path": "/api/generate", "body": gb.GENERATE_BODY}
    warming = await gb.measure("generate", target, args.clients, warmup=0.0,
                               duration=args.warmup, **generate)  # type: ignore[arg-type]
    if warming.errors:
        raise RuntimeError(f"the gateway fails while warming up: {warming.errors[0]}")
    results: dict[str, list[gb.Result]] = {"steady": [], "reloading": []}
    for round_index in range(args.rounds):
        order = ("steady", "reloading") if round_index % 2 == 0 else ("reloading", "steady")
        for kind in order:
            measuring = gb.measure("generate", target, args.clients, warmup=args.warmup,
                                   duration=args.duration, **generate)  # type: ignore[arg-type]
            if kind == "reloading":
                measured, _ = await asyncio.gather(
                    measuring, reloads.run(args.warmup + args.duration))
            else:
                measured = await measuring
            results[kind].append(measured)
            print(f"  round {round_index + 1} {kind:9}: {measured.count} requests, "
                  f"{len(measured.errors)} failed, {measured.count / measured.seconds:.0f} "
                  f"req/s", flush=True)
    return results


def report(results: dict[str, list[gb.Result]], reloads: Reloads, log: Path,
           args: argparse.Namespace) -> bool:
    def rate(result: gb.Result) -> float:
        return result.count / result.seconds

    steady = statistics.median(rate(r) for r in results["steady"])
    reloading = statistics.median(rate(r) for r in results["reloading"])
    ratio = reloading / steady if steady else float("nan")
    requests = {kind: sum(r.count for r in rs) for kind, rs in results.items()}
    failures = {kind: sum(len(r.errors) for r in rs) for kind, rs in results.items()}
    done, refused = count_log(log, "Reloaded "), count_log(log, "Reload refused")
    print(f"\nS1, {args.clients} clients, median of {args.rounds} round"
          f"{'s' if args.rounds > 1 else ''}:")
    print(f"  steady    : {requests['steady']} requests, {failures['steady']} failed, "
          f"{steady:.0f} req/s")
    print(f"  reloading : {requests['reloading']} requests, {failures['reloading']} failed, "
          f"{reloading:.0f} req/s (ratio {ratio:.3f}); {reloads.sent} SIGHUP sent, "
          f"{done} reloads done, {refused} refused")
    for kind, rs in results.items():
        for message in sorted({e for r in rs for e in r.errors})[:5]:
            print(f"  {kind} error: {message}")
    goals = [
        (failures["reloading"] <= GOAL_FAILURES and failures["steady"] == 0,
         f"failed requests while reloading every {args.interval:g} s: "
         f"{failures['reloading']} (goal {GOAL_FAILURES})"),
        (done == reloads.sent and refused == 0,
         f"every reload applied: {done}/{reloads.sent}"),
        (ratio >= GOAL_THROUGHPUT_RATIO,
         f"throughput while reloading / steady: {ratio:.3f} (goal >= {GOAL_THROUGHPUT_RATIO})"),
    ]
    print()
    for ok, line in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    return all(ok for ok, _ in goals)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="S1 load through runnergw while its settings are reloaded every second.")
    parser.add_argument("--quick", action="store_true", help="one short round of each")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds, each one steady and one reloading case (default 3, "
                             "--quick 1)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds measured per case (default 10, --quick 4)")
    parser.add_argument("--warmup", type=float, default=1.0,
                        help="warm-up seconds before each case (default 1)")
    parser.add_argument("--clients", type=int, default=16, help="clients (default 16)")
    parser.add_argument("--interval", type=float, default=1.0,
                        help="seconds between two reloads (default 1)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a goal is missed")
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 4.0 if args.quick else 10.0
    if args.rounds < 1 or args.duration <= 0 or args.clients < 1 or args.interval <= 0:
        parser.error("rounds, duration, clients and interval must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    upstream = gateway = None
    with tempfile.TemporaryDirectory(prefix="runnergw-reload-bench-") as temporary:
        directory = Path(temporary)
        try:
            upstream, upstream_port = pb.start_upstream(directory, 100, 40.0)
            ports = {"policy": gb.free_port(), "token": gb.free_port()}
            paths = pb.write_settings(directory, upstream_port, ports)
            home = directory / "policy"
            home.mkdir()
            gateway = gb.start_gateway(home, paths["policy"], ports["policy"])
            signing = load_signing_key(paths["signing"].read_bytes(), 4)
            tokens = [mint_token(signing, subject=f"bench-{i}", role=pb.ROLE, lifetime=3600.0,
                                 now=time.time()) for i in range(args.clients)]
            tls = ssl.create_default_context(cafile=str(paths["cert"]))
            tls.set_alpn_protocols(["http/1.1"])
            target = gb.Target("policy", ports["policy"], tls, pb.PREFIX, tokens)
            reloads = Reloads(paths["policy"], gateway.pid, args.interval)
            print(f"runnergw reload bench: python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs; gateway pid {gateway.pid}, upstream pid "
                  f"{upstream.pid}; S1 with {args.clients} clients, a reload every "
                  f"{args.interval:g} s in the reloading cases", flush=True)
            results = asyncio.run(run_rounds(args, target, reloads))
            if gateway.poll() is not None:
                raise RuntimeError("the gateway died during the run:\n"
                                   + gb.tail(home / "gateway.log"))
            ok = report(results, reloads, home / "gateway.log", args)
        except (RuntimeError, OSError, subprocess.SubprocessError) as e:
            print(f"bench failed: {e}", file=sys.stderr)
            return 2
        finally:
            gb.stop_process(gateway)
            gb.stop_process(upstream)
    print(f"\n{time.monotonic() - began:.0f} s in all")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
