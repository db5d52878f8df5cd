"""What ``server.workers: 2`` gives: S1 through a gateway of two worker processes beside the
same gateway as one process, in the same run.

One run starts the fast fake Ollama (``bench/fast_upstream.py``) and two runnergw gateways
that share its certificate, signing keys and upstream and differ only in ``server.workers``
(1 and 2); no ``roles`` section (several workers refuse it until the limits are shared), so
each runner has the default chain ``token, role, rewrite, audit``, the audit trail written
to a file (which the two workers of the second gateway append to together).

S1: non-streamed ``POST /api/generate`` from keep-alive HTTPS clients (the load generator
of ``gateway_bench.py``), 1 client and N clients, in rounds that alternate which gateway
goes first; the figures are the medians of the rounds. CPU is read from ``/proc`` for the
supervisor, each worker, the upstream and the load generator: on a small machine the
upstream and the clients take their share of the cores too, which bounds what a second
worker can add.

All traffic stays on 127.0.0.1.  It is a benchmark, not a test: figures depend on the machine
and on whatever else runs on it.

Usage: ``python bench/workers_bench.py [--quick] [--rounds N] [--clients N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import platform
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gateway_bench as gb  # noqa: E402  (puts the repository on sys.path too)

from runnergw.tokens.key_generation import write_signing_keypair  # noqa: E402
from runnergw.tokens.minting import mint_token  # noqa: E402
from runnergw.tokens.signing_keys import load_signing_key  # noqa: E402

HOST = gb.HOST
PREFIX = "/ollama"
NAMES = ("one", "two")
WORKERS = {"one": 1, "two": 2}


def write_settings(directory: Path, upstream_port: int, ports: dict[str, int]
                   ) -> dict[str, Path]:
    """Certificate, signing keys and a settings file per gateway; returns the paths."""
    paths = {name: directory / file for name, file in (
        ("cert", "gateway.pem"), ("key", "gateway.key"), ("signing", "paseto.key"),
        ("public", "paseto.pub"), ("one", "one.yaml"), ("two", "two.yaml"))}
    gb.write_self_signed(paths["cert"], paths["key"])
    write_signing_keypair(paths["signing"], paths["public"])
    for name in NAMES:
        document = {  # JSON is YAML
            "logging": {"level": "info"},
            "paseto": {"version": "v4", "keyPath": str(paths["signing"]),
                       "publicPath": str(paths["public"])},
            "server": {"address": f"{HOST}:{ports[name]}", "workers": WORKERS[name],
                       "certificatePath": str(paths["cert"]), "keyPath": str(paths["key"])},
            "runners": [{"name": name, "path": PREFIX, "host": f"{HOST}:{upstream_port}"}],
            "audit": {"path": str(directory / f"audit-{name}.log")},
            "metrics": {"address": f"{HOST}:0"},  # never the default port of a real one
            "shutdown": {"readinessDelay": 0},
        }
        paths[name].write_text(json.dumps(document, indent=2) + "\n")
    return paths


def wait_served(port: int, tls: ssl.SSLContext, token: str, workers: int) -> None:
    """Until ``workers`` requests in a row, on new connections, are answered 200."""
    deadline = time.monotonic() + 30
    served = 0
    while served < 4 * workers:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the gateway on port {port} does not answer 200")
        connection = http.client.HTTPSConnection(HOST, port, context=tls, timeout=10)
        try:
            connection.request("POST", f"{PREFIX}/api/generate", body=gb.GENERATE_BODY,
                               headers={"Authorization": f"Bearer {token}",
                                        "Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
            served = served + 1 if response.status == 200 else 0
        except OSError:
            served = 0
            time.sleep(0.1)
        finally:
            connection.close()


def children(pid: int) -> list[int]:
    """The processes ``pid`` started (its workers), from ``/proc``."""
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(child) for child in text.split()]


def show(round_index: int, name: str, result: gb.Result) -> None:
    print(f"  round {round_index + 1}: {WORKERS[name]} worker(s), {result.clients:>3} "
          f"clients: {result.rate:8.0f} req/s, p99 {gb._fmt(result.latency(99), 2)} ms, "
          f"{len(result.errors)} errors; %CPU "
          + ", ".join(f"{k} {v:.0f}" for k, v in result.cpu.items()), flush=True)


def _median(results: list[gb.Result], name: str, clients: int, figure) -> float:  # type: ignore[no-untyped-def]
    values = [figure(r) for r in results if r.target == name and r.clients == clients]
    return statistics.median(values) if values else float("nan")


def report(results: list[gb.Result], clients_n: int) -> None:
    print("\nS1, non-streamed POST /api/generate over HTTPS, medians of the rounds")
    print(f"{'clients':>8}{'workers':>9}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'gateway %CPU':>14}{'upstream %':>12}{'client %':>10}{'ratio':>8}")
    for clients in (1, clients_n):
        base = _median(results, "one", clients, lambda r: r.rate)
        for name in NAMES:
            rate = _median(results, name, clients, lambda r: r.rate)
            gateway = _median(results, name, clients, lambda r: sum(
                v for k, v in r.cpu.items() if k.startswith(("supervisor", "worker"))))
            upstream = _median(results, name, clients, lambda r: r.cpu.get("upstream", 0.0))
            client = _median(results, name, clients, lambda r: r.cpu.get("client", 0.0))
            print(f"{clients:>8}{WORKERS[name]:>9}{rate:>10.0f}"
                  f"{gb._fmt(_median(results, name, clients, lambda r: r.latency(50)), 3):>9}"
                  f"{gb._fmt(_median(results, name, clients, lambda r: r.latency(99)), 3):>9}"
                  f"{gateway:>14.0f}{upstream:>12.0f}{client:>10.0f}"
                  f"{rate / base if base else float('nan'):>8.2f}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="1 round of 2 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.warmup = 1, 2.0, 0.5
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    upstream = None
    gateways: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="runnergw-workers-bench-") as temporary:
        directory = Path(temporary)
        try:
            upstream, upstream_port = gb.start_upstream(directory, 8, 0.0)
            ports = {name: gb.free_port() for name in NAMES}
            paths = write_settings(directory, upstream_port, ports)
            signing = load_signing_key(paths["signing"].read_bytes(), 4)
            tokens = [mint_token(signing, subject=f"bench-{i}", role=None, lifetime=3600.0,
                                 now=time.time()) for i in range(max(args.clients, 1))]
            tls = ssl.create_default_context(cafile=str(paths["cert"]))
            tls.set_alpn_protocols(["http/1.1"])
            meters = {}
            for name in NAMES:
                home = directory / name  # its own log and working directory
                home.mkdir()
                process = gb.start_gateway(home, paths[name], ports[name])
                gateways[name] = process
                wait_served(ports[name], tls, tokens[0], WORKERS[name])
                pids = {"supervisor" if WORKERS[name] > 1 else "worker": process.pid}
                pids.update({f"worker{i}": pid for i, pid in enumerate(children(process.pid))
                             if WORKERS[name] > 1})
                meters[name] = gb.CpuMeter({**pids, "upstream": upstream.pid,
                                            "client": os.getpid()})
            targets = {name: gb.Target(name, ports[name], tls, PREFIX, tokens) for name in NAMES}
            print(f"runnergw workers bench: python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs; 1 worker: pid {gateways['one'].pid}, "  # type: ignore[attr-defined]
                  f"2 workers: supervisor pid {gateways['two'].pid} "  # type: ignore[attr-defined]
                  f"(workers {children(gateways['two'].pid)}); "  # type: ignore[attr-defined]
                  f"upstream pid {upstream.pid}", flush=True)
            results = asyncio.run(gb.s1_rounds(args, NAMES, targets, meters, args.rounds,
                                               show))
        except Exception as e:  # noqa: BLE001 - report and clean up
            print(f"bench failed: {e}", file=sys.stderr)
            return 2
        finally:
            for process in gateways.values():
                gb.stop_process(process)  # type: ignore[arg-type]
            gb.stop_process(upstream)
    report(results, args.clients)
    errors = sum(len(r.errors) for r in results)
    n = args.clients
    ratio = (_median(results, "two", n, lambda r: r.rate)
             / _median(results, "one", n, lambda r: r.rate))
    print(f"\nINFO  S1 with {n} clients: 2 workers serve {ratio:.2f}x the requests of 1 "
          f"worker on {os.cpu_count()} CPUs shared with the upstream and the clients")
    print(f"{errors} client errors; {time.monotonic() - began:.0f} s in all")
    return 2 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
