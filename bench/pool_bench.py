"""A runner pool of two hosts under load, one killed mid-run: errors, requests served, and the
time the killed host takes to be used again once it is back.

One run starts two fast fake Ollamas (``bench/fast_upstream.py``, each its own process, on
ports chosen up front) and a real runnergw (``twistd -n runnergw``, TLS, ``filters: [token,
audit]``, JSON log lines) with one runner whose ``hosts`` are both fakes and whose ``pool``
options are the defaults (eject after 3 failures for 1s doubling, probes every 2s). It then
drives keep-alive HTTPS clients from this process, half asking for whole answers
(``"stream": false``), half for short streams (``--chunks`` NDJSON lines ``--pause-ms``
apart), and

1. after ``--kill-at`` seconds kills the first fake with SIGKILL (its connections are reset,
   new connects refused);
2. ``--down-for`` seconds later starts it again on the same port;
3. stops the load once the gateway logged the host's readmission and ``--tail`` more seconds
   passed (or at ``--limit``).

It prints the requests served and the errors, split by what the audit trail says of each
failed request: failed before anything was sent (the goal is 0: those must go to the other
host), or cut after the request had been sent (streams under way on the killed host: not
replayed, by design); the ejection and the recovery time (the fake started again → the
gateway's ``upstream_host_readmitted`` event); requests per second before, during and after
the outage. All traffic stays on 127.0.0.1. It is a benchmark, not a test.

Usage: ``python bench/pool_bench.py [--clients N] [--kill-at S] [--down-for S] [--check]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gateway_bench as gb  # noqa: E402  (puts the repository on sys.path too)

from runnergw.config.load import ENVIRONMENT_OVERRIDES  # noqa: E402
from runnergw.tokens.key_generation import write_signing_keypair  # noqa: E402
from runnergw.tokens.minting import mint_token  # noqa: E402
from runnergw.tokens.signing_keys import load_signing_key  # noqa: E402

HOST = gb.HOST
PREFIX = "/pool"
WHOLE_BODY = b'{"model":"m","prompt":"hi","stream":false}'
STREAM_BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'
UNSENT_REASONS = ("connect failed", "connect timeout", "connection closed before sending",
                  "no host to try")
"""Audit reasons of a request the runner never got a byte of."""


@dataclass
class Outcome:
    """One request as the client saw it."""

    kind: str
    started: float
    ended: float
    status: int
    complete: bool


def start_fake(directory: Path, name: str, port: int, chunks: int, pause_ms: float) -> Any:
    argv = [sys.executable, str(BENCH / "fast_upstream.py"), "--host", HOST, "--port",
            str(port), "--chunks", str(chunks), "--pause-ms", str(pause_ms)]
    process = gb.start_process(argv, directory / f"{name}.log", directory)
    wait_for_port(port, process, directory / f"{name}.log")
    return process


def wait_for_port(port: int, process: Any, log: Path) -> None:
    import socket

    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"exited with status {process.returncode}:\n{gb.tail(log)}")
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} never accepted:\n{gb.tail(log)}") from None
            time.sleep(0.02)


def write_settings(directory: Path, hosts: list[int], gateway_port: int) -> dict[str, Path]:
    paths = {name: directory / file for name, file in (
        ("cert", "gateway.pem"), ("key", "gateway.key"), ("signing", "paseto.key"),
        ("public", "paseto.pub"), ("audit", "audit.log"), ("settings", "settings.yaml"))}
    gb.write_self_signed(paths["cert"], paths["key"])
    write_signing_keypair(paths["signing"], paths["public"])
    document = {
        "logging": {"level": "info"},
        "paseto": {"version": "v4", "keyPath": str(paths["signing"]),
                   "publicPath": str(paths["public"])},
        "server": {"address": f"{HOST}:{gateway_port}", "certificatePath": str(paths["cert"]),
                   "keyPath": str(paths["key"])},
        "runners": [{"name": "bench", "path": PREFIX,
                     "hosts": [f"{HOST}:{port}" for port in hosts],
                     "filters": ["token", "audit"]}],
        "audit": {"path": str(paths["audit"])},
        "metrics": {"address": f"{HOST}:0"},
    }
    paths["settings"].write_text(json.dumps(document, indent=2) + "\n")
    return paths


def start_gateway(directory: Path, settings: Path, port: int) -> Any:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(gb.REPO), env.get("PYTHONPATH")) if p)
    for name in ("RUNNERGW_ENV", "GO_ENV", "RUNNERGW_CONFIG", *ENVIRONMENT_OVERRIDES):
        env.pop(name, None)
    argv = gb.twistd_command() + ["--logger", "runnergw.logs.json_observer", "-n",
                                  "--pidfile=", "runnergw", "--config", str(settings)]
    process = gb.start_process(argv, directory / "gateway.log", directory, env=env)
    wait_for_port(port, process, directory / "gateway.log")
    return process


def gateway_events(directory: Path, name: str) -> list[dict[str, Any]]:
    events = []
    for line in (directory / "gateway.log").read_text(errors="replace").splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if isinstance(event, dict) and event.get("event") == name:
            events.append(event)
    return events


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, bool, bool]:
    """Status, whether the body came whole, whether the connection may be reused."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in
               (line.partition(":") for line in lines[1:] if line)}
    keep = headers.get("connection", "").lower() != "close"
    try:
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        else:
            await reader.readexactly(int(headers.get("content-length", "0")))
    except (asyncio.IncompleteReadError, ConnectionError, ValueError):
        return status, False, False
    return status, True, keep


async def client(index: int, kind: str, port: int, tls: ssl.SSLContext, token: str,
                 stop: asyncio.Event, outcomes: list[Outcome]) -> None:
    path, body = ("/api/generate", WHOLE_BODY) if kind == "whole" else ("/api/chat",
                                                                        STREAM_BODY)
    request = (f"POST {PREFIX}{path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
               f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
               f"Content-Length: {len(body)}\r\n\r\n").encode() + body
    loop = asyncio.get_running_loop()
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while not stop.is_set():
        if writer is None:
            reader, writer = await asyncio.open_connection(HOST, port, ssl=tls,
                                                           server_hostname=HOST)
        assert reader is not None
        started = loop.time()
        writer.write(request)
        try:
            status, complete, keep = await read_answer(reader)
        except (asyncio.IncompleteReadError, ConnectionError):
            status, complete, keep = 0, False, False
        outcomes.append(Outcome(kind, started, loop.time(), status, complete))
        if not keep:
            writer.close()
            writer = None


async def run(args: argparse.Namespace, directory: Path) -> int:
    ports = [gb.free_port(), gb.free_port()]
    gateway_port = gb.free_port()
    fakes = [start_fake(directory, f"host{i}", port, args.chunks, args.pause_ms)
             for i, port in enumerate(ports)]
    paths = write_settings(directory, ports, gateway_port)
    gateway = start_gateway(directory, paths["settings"], gateway_port)
    try:
        print(f"gateway pid {gateway.pid}; hosts 127.0.0.1:{ports[0]} (killed) and "
              f"127.0.0.1:{ports[1]}", flush=True)
        tls = ssl.create_default_context(cafile=str(paths["cert"]))
        key = load_signing_key(paths["signing"].read_bytes(), 4)
        stop = asyncio.Event()
        outcomes: list[Outcome] = []
        loop = asyncio.get_running_loop()
        tasks = [asyncio.create_task(client(
            i, "whole" if i % 2 == 0 else "stream", gateway_port, tls,
            mint_token(key, subject=f"bench{i}", role=None, lifetime=3600, now=time.time()),
            stop, outcomes)) for i in range(args.clients)]
        start = loop.time()
        await asyncio.sleep(args.kill_at)
        fakes[0].send_signal(signal.SIGKILL)
        fakes[0].wait()
        killed_at = loop.time()
        await asyncio.sleep(args.down_for)
        fakes[0] = start_fake(directory, "host0-again", ports[0], args.chunks, args.pause_ms)
        revived_at, revived_wall = loop.time(), time.time()
        readmitted: dict[str, Any] | None = None
        while loop.time() - start < args.limit:
            await asyncio.sleep(0.05)
            readmitted = next(iter(gateway_events(directory, "upstream_host_readmitted")), None)
            if readmitted is not None:
                break
        await asyncio.sleep(args.tail)
        stop.set()
        await asyncio.gather(*tasks, return_exceptions=True)
        return report(args, directory, paths, outcomes, start, killed_at, revived_at,
                      revived_wall, readmitted)
    finally:
        gb.stop_process(gateway)
        for fake in fakes:
            gb.stop_process(fake)


def report(args: argparse.Namespace, directory: Path, paths: dict[str, Path],
           outcomes: list[Outcome], start: float, killed_at: float, revived_at: float,
           revived_wall: float, readmitted: dict[str, Any] | None) -> int:
    failed = [o for o in outcomes if o.status != 200 or not o.complete]
    audits = [json.loads(line) for line in paths["audit"].read_text().splitlines() if line]
    bad = [a for a in audits if a.get("status") != 200 or a.get("outcome") != "ok"]
    unsent = [a for a in bad if str(a.get("reason") or "").startswith(UNSENT_REASONS)]
    sent = [a for a in bad if a not in unsent]
    ejected = gateway_events(directory, "upstream_host_ejected")

    def rate(low: float, high: float) -> float:
        served = sum(1 for o in outcomes if low <= o.ended < high and o.status == 200
                     and o.complete)
        return served / (high - low) if high > low else 0.0

    end = max((o.ended for o in outcomes), default=revived_at)
    print(f"\n{args.clients} clients ({args.clients - args.clients // 2} whole answers, "
          f"{args.clients // 2} streams of {args.chunks} lines {args.pause_ms:g} ms apart); "
          f"host 0 killed at {killed_at - start:.1f}s, back at {revived_at - start:.1f}s")
    print(f"{'requests':<44}{len(outcomes):>8}")
    print(f"{'served whole (200)':<44}{len(outcomes) - len(failed):>8}")
    print(f"{'errors seen by clients':<44}{len(failed):>8}")
    print(f"{'  not yet sent upstream (goal 0)':<44}{len(unsent):>8}")
    print(f"{'  cut after sending (not replayed)':<44}{len(sent):>8}")
    for reason in sorted({str(a.get('reason')) for a in bad}):
        count = sum(1 for a in bad if str(a.get("reason")) == reason)
        print(f"      {count:>5}  {reason}")
    print(f"{'ejections logged':<44}{len(ejected):>8}")
    recovery = None
    if readmitted is not None:
        recovery = float(readmitted.get("log_time", revived_wall)) - revived_wall
        print(f"{'recovery after the host came back (s)':<44}{recovery:>8.3f}")
    else:
        print(f"{'recovery after the host came back (s)':<44}{'never':>8}")
    print(f"{'requests/s before the kill':<44}{rate(start + 0.5, killed_at):>8.0f}")
    print(f"{'requests/s while one host was down':<44}{rate(killed_at, revived_at):>8.0f}")
    print(f"{'requests/s after recovery':<44}"
          f"{rate(revived_at + (recovery or 0.0), end):>8.0f}")
    goals = [(len(unsent) == 0, "no failed request that was not yet sent"),
             (recovery is not None and recovery <= 2 * 2.0 + 0.5,
              "the host is used again within two probe intervals of its return")]
    print()
    for ok, text in goals:
        print(f"{'PASS' if ok else 'FAIL'}  {text}")
    return 1 if args.check and not all(ok for ok, _ in goals) else 0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--chunks", type=int, default=20, help="lines per stream (20)")
    parser.add_argument("--pause-ms", type=float, default=5.0)
    parser.add_argument("--kill-at", type=float, default=2.0)
    parser.add_argument("--down-for", type=float, default=2.0)
    parser.add_argument("--tail", type=float, default=1.0)
    parser.add_argument("--limit", type=float, default=30.0)
    parser.add_argument("--check", action="store_true", help="exit 1 when a goal is missed")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="runnergw-pool-bench-") as name:
        return asyncio.run(run(args, Path(name)))


if __name__ == "__main__":
    sys.exit(main())
