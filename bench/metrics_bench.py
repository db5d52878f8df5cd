"""What the Prometheus metrics cost: S1 through two gateways that differ only in
``metrics.address``.

One run starts the fast fake Ollama (``bench/fast_upstream.py``) and two runnergw processes
with the roles' policy chain of ``policy_bench.py`` (so that every exchange feeds every
metric: the request counter, the duration, first-byte and overhead histograms, the GenAI token
and timing histograms from the usage filter's counts):

* ``on``: the metrics listener on a free loopback port, scraped every ``--scrape-interval``
  seconds (default 1 s, fifteen times Prometheus's default rate) while the load runs;
* ``off``: ``metrics.address: off``: no listener and no observer on the exchanges.

It then drives S1 (non-streamed ``POST /api/generate``, keep-alive HTTPS clients, 1 client and
N clients) in rounds that alternate which gateway goes first, and prints the throughput ratio
on/off, the p50 and p99 difference and the gateway CPU per request, with a PASS/FAIL line per
goal judged on the median of the rounds.

All traffic stays on 127.0.0.1. It is a benchmark, not a test: figures depend on the machine
and on whatever else runs on it.

Usage: ``python bench/metrics_bench.py [--quick] [--rounds N] [--clients N] [--check]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gateway_bench as gb  # noqa: E402  (puts the repository on sys.path too)
import policy_bench as pb  # noqa: E402

from runnergw.tokens.minting import mint_token  # noqa: E402
from runnergw.tokens.signing_keys import load_signing_key  # noqa: E402

HOST = gb.HOST
NAMES = ("off", "on")

GOAL_THROUGHPUT_COST = 0.05
"""With metrics, at least 1 - this of the throughput without them."""


# --------------------------------------------------------------------------------------------
# Set-up


def write_settings(directory: Path, upstream_port: int, ports: dict[str, int]
                   ) -> dict[str, Path]:
    """The policy bench's certificate, keys and policy settings, as two files that differ in
    ``metrics`` alone (and in their ports, audit trails and ledgers)."""
    paths = pb.write_settings(directory, upstream_port,
                              {"policy": ports["on"], "token": ports["off"]})
    policy = json.loads(paths["policy"].read_text())
    listeners = {"on": {"address": f"{HOST}:{ports['metrics']}"}, "off": {"address": "off"}}
    for name in NAMES:
        document = dict(policy)
        document["server"] = {**policy["server"], "address": f"{HOST}:{ports[name]}"}
        document["metrics"] = listeners[name]
        document["audit"] = {"path": str(directory / f"audit-{name}.log")}
        document["policy"] = {**policy["policy"],
                              "ledgerPath": str(directory / f"usage-{name}.sqlite")}
        paths[name] = directory / f"{name}.yaml"
        paths[name].write_text(json.dumps(document, indent=2) + "\n")
    return paths


class Scraper:
    """Scrapes ``/metrics`` every ``interval`` seconds from a thread, as Prometheus would."""

    def __init__(self, url: str, interval: float) -> None:
        self.url = url
        self.interval = interval
        self.scrapes = 0
        self.errors: list[str] = []
        self.last = b""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def scrape(self) -> bytes:
        with urllib.request.urlopen(self.url, timeout=5) as response:
            return bytes(response.read())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.last = self.scrape()
                self.scrapes += 1
            except OSError as e:
                self.errors.append(str(e))


def counted_requests(exposition: bytes) -> float:
    """The sum of ``runnergw_requests_total`` in a scrape."""
    total = 0.0
    for line in exposition.decode().splitlines():
        if line.startswith("runnergw_requests_total{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


# --------------------------------------------------------------------------------------------
# Cases


def show(round_index: int, name: str, result: gb.Result) -> None:
    errors = f", {len(result.errors)} errors: {result.errors[0]}" if result.errors else ""
    print(f"  round {round_index + 1} metrics {name:<3} x{result.clients:<4}"
          f"{result.count:>7} done, {result.rate:9.1f} req/s, gateway "
          f"{result.cpu.get('gateway', float('nan')):.0f} % CPU{errors}", flush=True)


# --------------------------------------------------------------------------------------------
# Report


def _rounds(results: list[gb.Result], clients: int) -> list[dict[str, gb.Result]]:
    wanted = [r for r in results if r.clients == clients]
    return [{r.target: r for r in wanted[i:i + 2]} for i in range(0, len(wanted), 2)]


def _median(values: Sequence[float]) -> float:
    clean = [v for v in values if v == v]
    return statistics.median(clean) if clean else float("nan")


def _per_round(results: list[gb.Result], clients: int,
               figure: Callable[[gb.Result], float]) -> tuple[float, float, float]:
    """Median over the rounds of the figure off, on, and of their difference."""
    rounds = _rounds(results, clients)
    return (_median([figure(r["off"]) for r in rounds]),
            _median([figure(r["on"]) for r in rounds]),
            _median([figure(r["on"]) - figure(r["off"]) for r in rounds]))


def _ratio(results: list[gb.Result], clients: int) -> float:
    return _median([r["on"].rate / r["off"].rate if r["off"].rate else float("nan")
                    for r in _rounds(results, clients)])


def report(results: list[gb.Result], args: argparse.Namespace,
           scraper: Scraper) -> list[tuple[bool, str]]:
    print()
    print("S1: non-streamed POST /api/generate, policy chain; CPU in % of one core")
    print(f"{'round':>5} {'metrics':<8}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'gateway':>9}{'us/req':>8}{'errors':>7}")
    for clients in (1, args.clients):
        for index, pair in enumerate(_rounds(results, clients)):
            for name in NAMES:
                r = pair[name]
                print(f"{index + 1:>5} {name:<8}{r.clients:>8}{r.rate:>9.0f}"
                      f"{gb._fmt(r.latency(50), 3):>9}{gb._fmt(r.latency(99), 3):>9}"
                      f"{r.cpu.get('gateway', float('nan')):>9.0f}"
                      f"{gb._fmt(r.gateway_cpu_us, 0):>8}{len(r.errors):>7}")
    print()
    print(f"summary (median of {args.rounds} round{'s' if args.rounds > 1 else ''}; ratio "
          "and differences: median of the rounds' own)")
    print(f"{'clients':>7}{'off req/s':>11}{'on req/s':>10}{'ratio':>7}{'p50 off':>9}"
          f"{'p50 on':>8}{'added':>8}{'p99 off':>9}{'p99 on':>8}{'added':>8}"
          f"{'us/req off':>12}{'on':>6}")
    goals: list[tuple[bool, str]] = []
    for clients in (1, args.clients):
        rate_off, rate_on, _ = _per_round(results, clients, lambda r: r.rate)
        p50_off, p50_on, p50_d = _per_round(results, clients, lambda r: r.latency(50))
        p99_off, p99_on, p99_d = _per_round(results, clients, lambda r: r.latency(99))
        cpu_off, cpu_on, _ = _per_round(results, clients, lambda r: r.gateway_cpu_us)
        ratio = _ratio(results, clients)
        print(f"{clients:>7}{rate_off:>11.0f}{rate_on:>10.0f}{ratio:>7.3f}{p50_off:>9.3f}"
              f"{p50_on:>8.3f}{p50_d:>+8.3f}{p99_off:>9.3f}{p99_on:>8.3f}{p99_d:>+8.3f}"
              f"{cpu_off:>12.0f}{cpu_on:>6.0f}")
        goals.append((ratio >= 1.0 - GOAL_THROUGHPUT_COST,
                      f"throughput, {clients} client{'s' if clients > 1 else ''}: metrics on "
                      f"{rate_on:.0f} req/s = {ratio:.3f} of off {rate_off:.0f} req/s, "
                      f"{(1 - ratio) * 100:.1f} % lost (goal < {GOAL_THROUGHPUT_COST * 100:g} "
                      f"%); p50 {p50_d:+.3f} ms"))
    print()
    for clients in (1, args.clients):
        cpu_off, cpu_on, cpu_d = _per_round(results, clients, lambda r: r.gateway_cpu_us)
        if cpu_on == cpu_on and cpu_on:
            print(f"INFO: gateway CPU per request, {clients} client"
                  f"{'s' if clients > 1 else ''}: off {cpu_off:.0f} us, on {cpu_on:.0f} us "
                  f"({cpu_d:+.0f} us; as a CPU-bound throughput ratio {cpu_off / cpu_on:.3f})")
    others = max((r.cpu.get("others", 0.0) for r in results), default=0.0)
    if others > 15:
        print(f"warning: other processes used up to {others:.0f} % of a core during a case; "
              "throughput figures are disturbed (the CPU per request less so)")
    size, lines = len(scraper.last), scraper.last.count(b"\n")
    print(f"INFO: {scraper.scrapes} scrapes of /metrics during the run, every "
          f"{scraper.interval:g} s ({size} bytes, {lines} lines at the end); "
          f"{len(scraper.errors)} failed")
    return goals


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure what runnergw's Prometheus metrics cost on S1.")
    parser.add_argument("--quick", action="store_true",
                        help="one round, short cases (under 30 s in all)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="rounds, each measuring both gateways (default 5, --quick 1)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds measured per case (default 4, --quick 1.5)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="warm-up seconds before each case (default 1, --quick 0.5)")
    parser.add_argument("--clients", type=int, default=16,
                        help="clients of the loaded case (default 16)")
    parser.add_argument("--scrape-interval", type=float, default=1.0,
                        help="seconds between scrapes of the metrics gateway (default 1)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a goal is missed")
    args = parser.parse_args(argv)
    for name, full, quick in (("rounds", 5, 1), ("duration", 4.0, 1.5), ("warmup", 1.0, 0.5)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    if (args.rounds < 1 or args.duration <= 0 or args.warmup < 0 or args.clients < 1
            or args.scrape_interval <= 0):
        parser.error("rounds, durations, clients and the scrape interval must be positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    upstream = None
    gateways: dict[str, subprocess.Popen[bytes]] = {}
    with tempfile.TemporaryDirectory(prefix="runnergw-metrics-bench-") as temporary:
        directory = Path(temporary)
        try:
            upstream, upstream_port = pb.start_upstream(directory, 3, 0.0)
            ports = {"on": gb.free_port(), "off": gb.free_port(), "metrics": gb.free_port()}
            paths = write_settings(directory, upstream_port, ports)
            for name in NAMES:
                home = directory / name
                home.mkdir()
                gateways[name] = gb.start_gateway(home, paths[name], ports[name])
            signing = load_signing_key(paths["signing"].read_bytes(), 4)
            tokens = [mint_token(signing, subject=f"bench-{i}", role=pb.ROLE, lifetime=3600.0,
                                 now=time.time()) for i in range(args.clients)]
            tls = ssl.create_default_context(cafile=str(paths["cert"]))
            tls.set_alpn_protocols(["http/1.1"])
            targets = {name: gb.Target(name, ports[name], tls, pb.PREFIX, tokens)
                       for name in NAMES}
            meters = {name: gb.CpuMeter({"gateway": gateways[name].pid,
                                         "upstream": upstream.pid, "client": os.getpid()})
                      for name in NAMES}
            scraper = Scraper(f"http://{HOST}:{ports['metrics']}/metrics",
                              args.scrape_interval)
            scraper.scrape()  # the listener answers before the load starts
            print(f"runnergw metrics bench: python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs; gateway with metrics pid {gateways['on'].pid}, "
                  f"without pid {gateways['off'].pid}, upstream pid {upstream.pid}",
                  flush=True)
            scraper.start()
            try:
                results = asyncio.run(gb.s1_rounds(args, NAMES, targets, meters,
                                                   args.rounds, show))
            finally:
                scraper.stop()
            final = scraper.scrape()
        finally:
            for process in gateways.values():
                gb.stop_process(process)
            gb.stop_process(upstream)
    goals = report(results, args, scraper)
    served = sum(r.count for r in results if r.target == "on")
    print(f"INFO: the metrics gateway counted {counted_requests(final):.0f} requests "
          f"(at least the {served} measured, warm-ups and probes besides)")
    for ok, text in goals:
        print(f"{'PASS' if ok else 'FAIL'}: {text}")
    print(f"total time {time.monotonic() - began:.0f} s")
    return 1 if args.check and not all(ok for ok, _ in goals) else 0


if __name__ == "__main__":
    sys.exit(main())
