"""What sharing the limits through Redis costs: S1 with Redis-backed limits beside the same
limits kept in the process, in the same run.

One run starts a redis-server on loopback (nothing saved), the fast fake Ollama and two
runnergw processes with the same ``roles`` section (rate limit, concurrency cap and daily
quota: generous, evaluated on every request, never reached) and the full policy chain; they
differ only in ``limits.backend``:

* ``local``: buckets, slots and daily totals in the process;
* ``redis``: the same in Redis (a script call per check: the bucket, the slot taken and
  given back, the quota lease and the final count).

It drives keep-alive HTTPS clients (``gateway_bench.py``'s load generator) through S1
(non-streamed ``POST /api/generate``) with 1 and N clients, in rounds alternating which
gateway goes first, and prints the figures, the ratios and a PASS/FAIL line per goal:
throughput with Redis at least 0.8 of in-process, added p99 under 0.5 ms (1 client).

All traffic stays on 127.0.0.1. A benchmark, not a test: figures depend on the machine.

Usage: ``python bench/redis_limits_bench.py [--quick] [--rounds N] [--clients N] [--check]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
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

REDIS_SERVER = "/usr/bin/redis-server"
NAMES = ("local", "redis")
GOAL_THROUGHPUT_RATIO = 0.8
GOAL_ADDED_P99_MS = 0.5


def start_redis(directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """A redis-server on a free loopback port, ready to answer."""
    port = gb.free_port()
    process = gb.start_process(
        [REDIS_SERVER, "--port", str(port), "--bind", gb.HOST, "--save", "",
         "--appendonly", "no", "--dir", str(directory), "--logfile", ""],
        directory / "redis.log", directory)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if b"ready to accept connections" in (directory / "redis.log").read_bytes().lower():
            return process, port
        if process.poll() is not None:
            break
        time.sleep(0.05)
    gb.stop_process(process)
    raise RuntimeError("redis-server did not start:\n" + gb.tail(directory / "redis.log"))


def write_settings(directory: Path, upstream_port: int, redis_port: int,
                   ports: dict[str, int]) -> dict[str, Path]:
    """The policy bench's settings with roles, once per backend, each with its own ledger
    and audit file."""
    paths = pb.write_settings(directory, upstream_port, {"policy": ports["local"],
                                                          "token": gb.free_port()})
    base = json.loads(paths["policy"].read_text())
    for name in NAMES:
        document = json.loads(json.dumps(base))
        document["server"]["address"] = f"{gb.HOST}:{ports[name]}"
        document["policy"]["ledgerPath"] = str(directory / f"{name}.sqlite")
        document["audit"]["path"] = str(directory / f"{name}-audit.log")
        document["shutdown"] = {"readinessDelay": 0}
        if name == "redis":
            document["limits"] = {"backend": "redis", "nodes": 1}
            document["redis"] = {"address": f"{gb.HOST}:{redis_port}", "keyPrefix": "bench:"}
        paths[name] = directory / f"{name}.yaml"
        paths[name].write_text(json.dumps(document, indent=2) + "\n")
    return paths


async def redis_round_trip(port: int, count: int = 2000) -> tuple[float, float]:
    """p50 and p99 (ms) of ``count`` PINGs one after the other from a small asyncio client:
    what one round trip to this redis-server costs on this machine, for reading the added
    latency of the Redis gateway (one round trip per request)."""
    reader, writer = await asyncio.open_connection(gb.HOST, port)
    times = []
    try:
        for _ in range(count):
            started = time.perf_counter()
            writer.write(b"PING\r\n")
            if await reader.readline() != b"+PONG\r\n":
                raise RuntimeError("redis-server did not answer PING")
            times.append((time.perf_counter() - started) * 1000)
    finally:
        writer.close()
    times.sort()
    return times[len(times) // 2], times[int(len(times) * 0.99)]


def show(round_index: int, name: str, result: gb.Result) -> None:
    print(f"  round {round_index + 1} {name:<6} x{result.clients:<3}{result.count:>7} done, "
          f"{result.rate:8.0f} req/s, p99 {result.latency(99):.3f} ms, gateway "
          f"{result.cpu.get('gateway', float('nan')):.0f} % CPU, redis-server "
          f"{result.cpu.get('redis', float('nan')):.0f} %"
          + (f", {len(result.errors)} errors" if result.errors else ""), flush=True)


def _median_of(results: list[gb.Result], clients: int, figure: str) -> tuple[float, ...]:
    """Median over rounds of the figure for local, for redis, and of redis - local (or
    redis / local for the rate)."""
    rounds = [r for r in results if r.clients == clients]
    pairs = [{r.target: r for r in rounds[i:i + 2]} for i in range(0, len(rounds), 2)]

    def value(r: gb.Result) -> float:
        if figure == "rate":
            return r.rate
        if figure == "cpu":
            return r.gateway_cpu_us
        return r.latency(99 if figure == "p99" else 50)

    local = pb._median([value(p["local"]) for p in pairs])
    shared = pb._median([value(p["redis"]) for p in pairs])
    compared = pb._median([value(p["redis"]) / value(p["local"]) if figure == "rate"
                           else value(p["redis"]) - value(p["local"]) for p in pairs])
    return local, shared, compared


def notes(results: list[gb.Result], args: argparse.Namespace) -> list[str]:
    found = []
    for clients in (1, args.clients):
        local, shared, added = _median_of(results, clients, "p50")
        found.append(f"added p50, {clients} client{'s' if clients > 1 else ''}: {added:+.3f} ms "
                     f"(Redis {shared:.3f} ms, in-process {local:.3f} ms)")
        local, shared, added = _median_of(results, clients, "cpu")
        found.append(f"gateway CPU per request, {clients} client{'s' if clients > 1 else ''}: "
                     f"{added:+.0f} us (Redis {shared:.0f} us, in-process {local:.0f} us)")
    return found


def verdicts(results: list[gb.Result], args: argparse.Namespace) -> list[tuple[bool, str]]:
    goals = []
    for clients in (args.clients, 1):
        local, shared, ratio = _median_of(results, clients, "rate")
        goals.append((ratio >= GOAL_THROUGHPUT_RATIO,
                      f"throughput, {clients} client{'s' if clients > 1 else ''}: Redis "
                      f"limits {shared:.0f} req/s = {ratio:.3f} of in-process {local:.0f} "
                      f"req/s (goal >= {GOAL_THROUGHPUT_RATIO:g})"))
    for clients in (1, args.clients):
        local, shared, added = _median_of(results, clients, "p99")
        ok = added < GOAL_ADDED_P99_MS if clients == 1 else True
        goals.append((ok, f"added p99, {clients} client{'s' if clients > 1 else ''}: "
                          f"{added:+.3f} ms (Redis {shared:.3f} ms, in-process {local:.3f} ms"
                          + (f"; goal < {GOAL_ADDED_P99_MS:g} ms)" if clients == 1 else
                             "; for information)")))
    return goals


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure runnergw's limits kept in Redis against the same in-process.")
    parser.add_argument("--quick", action="store_true", help="one short round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds measured per case (default 4, --quick 1.5)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="warm-up seconds before each case (default 1, --quick 0.5)")
    parser.add_argument("--clients", type=int, default=16, help="loaded clients (16)")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the Redis gateway with py-spy during the run (FILE.svg a "
                             "flame graph, FILE.json speedscope, else collapsed stacks)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a goal is missed")
    args = parser.parse_args(argv)
    for name, full, quick in (("rounds", 3, 1), ("duration", 4.0, 1.5), ("warmup", 1.0, 0.5)):
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    processes: list[subprocess.Popen[bytes]] = []
    profiler = None
    round_trip = (float("nan"), float("nan"))
    with tempfile.TemporaryDirectory(prefix="runnergw-redis-bench-") as temporary:
        directory = Path(temporary)
        try:
            redis, redis_port = start_redis(directory)
            processes.append(redis)
            upstream, upstream_port = pb.start_upstream(directory, 4, 0.0)
            processes.append(upstream)
            ports = {name: gb.free_port() for name in NAMES}
            paths = write_settings(directory, upstream_port, redis_port, ports)
            gateways = {}
            for name in NAMES:
                home = directory / name
                home.mkdir()
                gateways[name] = gb.start_gateway(home, paths[name], ports[name])
                processes.append(gateways[name])
            signing = load_signing_key(paths["signing"].read_bytes(), 4)
            tokens = [mint_token(signing, subject=f"bench-{i}", role=pb.ROLE, lifetime=3600.0,
                                 now=time.time()) for i in range(args.clients)]
            tls = ssl.create_default_context(cafile=str(paths["cert"]))
            tls.set_alpn_protocols(["http/1.1"])
            targets = {name: gb.Target(name, ports[name], tls, pb.PREFIX, tokens)
                       for name in NAMES}
            meters = {name: gb.CpuMeter({"gateway": gateways[name].pid, "redis": redis.pid,
                                         "client": os.getpid()}) for name in NAMES}
            print(f"runnergw redis limits bench: python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs; gateways {gateways['local'].pid} (in-process "
                  f"limits) and {gateways['redis'].pid} (Redis on loopback, pid {redis.pid})",
                  flush=True)
            if args.profile:
                profiler = gb.start_profiler(gateways["redis"].pid, args.profile, directory)
            round_trip = asyncio.run(redis_round_trip(redis_port))
            results = asyncio.run(gb.s1_rounds(args, NAMES, targets, meters, args.rounds,
                                               show))
            if profiler is not None:
                gb.stop_profiler(profiler, directory)
                profiler = None
            for name, process in gateways.items():
                if process.poll() is not None:
                    raise RuntimeError(f"the {name} gateway died during the run:\n"
                                       + gb.tail(directory / name / "gateway.log"))
        except Exception as e:  # noqa: BLE001 - report and clean up
            print(f"bench failed: {e}", file=sys.stderr)
            return 2
        finally:
            if profiler is not None:
                gb.stop_profiler(profiler, directory)
            for process in reversed(processes):
                gb.stop_process(process)
    print(f"\nINFO  one Redis round trip (PING from Python, one after the other): p50 "
          f"{round_trip[0]:.3f} ms, p99 {round_trip[1]:.3f} ms")
    return gb.report(notes(results, args), verdicts(results, args),
                     sum(len(r.errors) for r in results), began, args.check)

if __name__ == "__main__":
    sys.exit(main())
