"""How much runnergw costs in front of Ollama: throughput, latency and streaming overhead.

One run starts a fast fake Ollama (``bench/fast_upstream.py``) and a real runnergw (``twistd -n
runnergw``, TLS, v4.public tokens, the default filter chain with the audit trail written to a
file), each in its own process, then drives keep-alive HTTP/1.1 clients from this process
(asyncio, one connection per client, requests back to back) both through the gateway (HTTPS)
and straight at the upstream (plain HTTP), and prints the figures and a PASS/FAIL line per
goal.  All traffic stays on 127.0.0.1.  It is a benchmark, not a test: figures depend on the
machine and on whatever else runs on it.

Usage: ``python bench/gateway_bench.py [--quick] [--duration S] [--clients N]``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import gc
import ipaddress
import json
import os
import platform
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import hashes, serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID  # noqa: E402

from runnergw.config.load import ENVIRONMENT_OVERRIDES  # noqa: E402
from runnergw.tokens.key_generation import write_signing_keypair  # noqa: E402
from runnergw.tokens.minting import mint_token  # noqa: E402
from runnergw.tokens.signing_keys import load_signing_key  # noqa: E402

HOST = "127.0.0.1"
PREFIX = "/ollama"
OBSERVED_PREFIX = "/observed"
"""The same upstream behind a chain with a filter that parses every streamed line."""
GENERATE_BODY = b'{"model":"m","prompt":"hi","stream":false}'
CHAT_BODY = b'{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}'

GOAL_THROUGHPUT_RATIO = 0.06
GOAL_ADDED_P50_MS = 0.5
GOAL_ADDED_TTFC_1_MS = 1.0
GOAL_ADDED_TTFC_N_MS = 3.0
GOAL_STREAM_OVERHEAD_PCT = 0.2


# --------------------------------------------------------------------------------------------
# Set-up: certificate, keys, settings, processes


def write_self_signed(cert_path: Path, key_path: Path) -> None:
    """A self-signed EC P-256 server certificate for 127.0.0.1 (it is its own trust root)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "runnergw bench")])
    now = datetime.datetime.now(datetime.timezone.utc)
    public = key.public_key()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address(HOST)), x509.DNSName("localhost")]),
            critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    key_path.chmod(0o600)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGTERM when the benchmark dies, however it dies (Linux only)."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def start_process(argv: Sequence[str], log_path: Path, cwd: Path,
                  env: dict[str, str] | None = None,
                  stdout: Any = None) -> subprocess.Popen[bytes]:
    log = open(log_path, "wb")  # noqa: SIM115 - lives as long as the process
    try:
        return subprocess.Popen(
            list(argv), cwd=cwd, env=env, stdin=subprocess.DEVNULL,
            stdout=log if stdout is None else stdout, stderr=log,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None)
    finally:
        log.close()


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM, then SIGKILL if it lingers."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def start_upstream(directory: Path, chunks: int, pause_ms: float
                   ) -> tuple[subprocess.Popen[bytes], int]:
    """Start the fake Ollama; returns the process and the port it printed."""
    argv = [sys.executable, str(Path(__file__).with_name("fast_upstream.py")), "--host", HOST,
            "--port", "0", "--chunks", str(chunks), "--pause-ms", str(pause_ms)]
    process = start_process(argv, directory / "upstream.log", directory,
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
        stop_process(process)
        raise RuntimeError("the fake upstream did not start:\n"
                           + tail(directory / "upstream.log"))
    return process, int(line.split()[1])


def twistd_command() -> list[str]:
    """``twistd`` of this interpreter's environment, else the same through ``python -c``."""
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [sys.executable, str(script)]
    return [sys.executable, "-c",
            "import sys; sys.argv[0] = 'twistd'; from twisted.scripts.twistd import run; run()"]


def write_settings(directory: Path, upstream_port: int, gateway_port: int) -> dict[str, Path]:
    """Certificate, signing keys and the settings file; returns the paths."""
    paths = {name: directory / file for name, file in (
        ("cert", "gateway.pem"), ("key", "gateway.key"), ("signing", "paseto.key"),
        ("public", "paseto.pub"), ("audit", "audit.log"), ("settings", "settings.yaml"))}
    write_self_signed(paths["cert"], paths["key"])
    write_signing_keypair(paths["signing"], paths["public"])
    document = {  # JSON is YAML
        "logging": {"level": "info"},
        "paseto": {"version": "v4", "keyPath": str(paths["signing"]),
                   "publicPath": str(paths["public"])},
        "server": {"address": f"{HOST}:{gateway_port}", "certificatePath": str(paths["cert"]),
                   "keyPath": str(paths["key"])},
        "runners": [{"name": "bench", "path": PREFIX, "host": f"{HOST}:{upstream_port}",
                     "filters": ["token", "role", "rewrite", "audit"]},
                    {"name": "observed", "path": OBSERVED_PREFIX,
                     "host": f"{HOST}:{upstream_port}",
                     "filters": ["token", "role", "rewrite", "bench.line_observer.LineObserver",
                                 "audit"]}],
        "audit": {"path": str(paths["audit"])},
        "metrics": {"address": f"{HOST}:0"},  # never the default port of a real one
    }
    paths["settings"].write_text(json.dumps(document, indent=2) + "\n")
    return paths


def start_gateway(directory: Path, settings: Path, port: int) -> subprocess.Popen[bytes]:
    """``twistd -n --pidfile= runnergw --config settings``; returns once the port accepts."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    for name in ("RUNNERGW_ENV", "GO_ENV", "RUNNERGW_CONFIG", *ENVIRONMENT_OVERRIDES):
        env.pop(name, None)  # the settings file alone decides
    argv = twistd_command() + ["-n", "--pidfile=", "runnergw", "--config", str(settings)]
    process = start_process(argv, directory / "gateway.log", directory, env=env)
    deadline = time.monotonic() + 30
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"runnergw exited with status {process.returncode}:\n"
                               + tail(directory / "gateway.log"))
        try:
            socket.create_connection((HOST, port), timeout=0.5).close()
            return process
        except OSError:
            if time.monotonic() > deadline:
                stop_process(process)
                raise RuntimeError("runnergw did not accept connections within 30 s:\n"
                                   + tail(directory / "gateway.log")) from None
            time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Load generator: keep-alive HTTP/1.1 clients, one connection each, requests back to back


@dataclass
class Sample:
    """One request: when it was sent, when the first body byte and the end arrived."""

    start: float
    first: float
    end: float


@dataclass
class Phase:
    """What all clients of one measurement share."""

    request: Callable[[int], bytes]
    """The request bytes for the client of that index."""
    record_from: float
    """Requests sent before this are warm-up."""
    stop_at: float
    """No request is sent after this."""
    skip_first: int = 0
    """Requests at the start of each connection that are warm-up, whatever the time."""
    expect_lines: int = 0
    """NDJSON lines a response must carry (0: do not check)."""
    stagger: float = 0.0
    """Client ``i`` sends its first request ``i * stagger`` seconds after the start."""
    pace: float = 0.0
    """Seconds between the upstream's NDJSON lines, to time each line against (0: do not)."""
    samples: list[Sample] = field(default_factory=list)
    lags_ms: list[float] = field(default_factory=list)
    """How late each line arrived against the stream's schedule (its most punctual line)."""
    completed: int = 0
    """Responses completed, warm-up included."""
    lines: int = 0
    """NDJSON lines received, warm-up included."""
    errors: list[str] = field(default_factory=list)


class BenchClient(asyncio.Protocol):
    """One keep-alive connection sending one request after another and timing each answer."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.phase: Phase | None = None
        self.finished: asyncio.Future[None] = self.loop.create_future()
        self.sent = 0
        self._reset()

    def _reset(self) -> None:
        self.buffer = b""
        self.in_head = True
        self.status = 0
        self.remaining = 0
        self.chunked = False
        self.in_chunk = 0
        self.crlf = 0
        self.lines = 0
        self.arrivals: list[float] = []
        self.started = 0.0
        self.first = 0.0

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.finished.done():
            if self.phase is not None:
                self.phase.errors.append(f"connection lost: {exc or 'closed by the server'}")
            self.finished.set_result(None)

    def run(self, phase: Phase) -> asyncio.Future[None]:
        self.phase = phase
        self.request = phase.request(self.index)
        if phase.stagger and self.index:
            self.loop.call_later(self.index * phase.stagger, self._send)
        else:
            self._send()
        return self.finished

    def _send(self) -> None:
        assert self.transport is not None
        self._reset()
        self.sent += 1
        self.started = time.perf_counter()
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        if self.in_head:
            data = self.buffer + data
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buffer = data
                return
            head = data[:end].lower()
            self.status = int(head[9:12])
            self.in_head = False
            self.buffer = b""
            if b"transfer-encoding: chunked" in head:
                self.chunked = True
            else:
                marker = head.find(b"content-length:")
                self.remaining = int(head[marker + 15:head.find(b"\r\n", marker)]) \
                    if marker >= 0 else 0
            if b"connection: close" in head:
                self._error("the server closes the connection")
                return
            data = data[end + 4:]
            if not self.chunked and self.remaining == 0:
                self.first = now
                self._complete(now)
                return
        if not data:
            return
        if not self.first:
            self.first = now
        if self.chunked:
            self._chunked(data, now)
        else:
            self.remaining -= len(data)
            if self.remaining <= 0:
                self._complete(now)

    def _chunked(self, data: bytes, now: float) -> None:
        buffer = self.buffer + data if self.buffer else data
        self.buffer = b""
        position, size = 0, len(buffer)
        while position < size:
            if self.in_chunk:  # chunk data still due
                take = min(self.in_chunk, size - position)
                found = buffer.count(b"\n", position, position + take)
                if found:
                    self.lines += found
                    self.arrivals.extend([now] * found)
                self.in_chunk -= take
                position += take
                if not self.in_chunk:
                    self.crlf = 2
                continue
            if self.crlf:  # the CRLF that ends a chunk's data
                take = min(self.crlf, size - position)
                self.crlf -= take
                position += take
                continue
            line_end = buffer.find(b"\r\n", position)
            if line_end < 0:
                self.buffer = buffer[position:]
                return
            chunk = int(buffer[position:line_end].split(b";", 1)[0], 16)
            if chunk == 0:
                if size - line_end - 2 < 2:  # the empty line after the last chunk
                    self.buffer = buffer[position:]
                    return
                self._complete(now)
                return
            self.in_chunk = chunk
            position = line_end + 2

    def _complete(self, now: float) -> None:
        phase = self.phase
        assert phase is not None
        if self.status != 200:
            self._error(f"status {self.status}")
            return
        if phase.expect_lines and self.lines != phase.expect_lines:
            self._error(f"{self.lines} NDJSON lines instead of {phase.expect_lines}")
            return
        phase.completed += 1
        phase.lines += self.lines
        if self.sent > phase.skip_first and self.started >= phase.record_from:
            phase.samples.append(Sample(self.started, self.first, now))
            if phase.pace and self.arrivals:
                pace = phase.pace
                offsets = [arrived - index * pace for index, arrived in enumerate(self.arrivals)]
                origin = min(offsets)  # the schedule, as kept by the most punctual line
                phase.lags_ms.extend((offset - origin) * 1000.0 for offset in offsets)
        if now < phase.stop_at:
            self._send()
        elif not self.finished.done():
            self.finished.set_result(None)

    def _error(self, message: str) -> None:
        assert self.phase is not None
        self.phase.errors.append(message)
        if not self.finished.done():
            self.finished.set_result(None)
        if self.transport is not None:
            self.transport.close()


@dataclass
class Target:
    """Where clients connect and how requests for it look."""

    name: str
    port: int
    tls: ssl.SSLContext | None
    prefix: str
    tokens: list[str]

    def request(self, path: str, body: bytes, index: int) -> bytes:
        auth = (f"Authorization: Bearer {self.tokens[index % len(self.tokens)]}\r\n"
                if self.tokens else "")
        return (f"POST {self.prefix}{path} HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
                f"User-Agent: runnergw-bench\r\nAccept: */*\r\n{auth}"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
                ).encode("latin-1") + body


async def connect(target: Target, count: int) -> list[BenchClient]:
    loop = asyncio.get_running_loop()
    clients = []
    for index in range(count):
        _, client = await loop.create_connection(
            lambda index=index: BenchClient(index), HOST, target.port, ssl=target.tls,
            server_hostname=HOST if target.tls else None)
        clients.append(client)
    return clients


@dataclass
class Result:
    """One measurement's figures."""

    kind: str
    target: str
    clients: int
    count: int
    seconds: float
    latencies_ms: list[float]
    first_ms: list[float]
    errors: list[str]
    lags_ms: list[float] = field(default_factory=list)
    cpu: dict[str, float] = field(default_factory=dict)
    """Percent of one core used by each process (and by everything else) during the case."""
    gateway_cpu_us: float = float("nan")
    """Gateway CPU time per request (non-streaming) or per relayed line (streaming)."""

    @property
    def rate(self) -> float:
        return self.count / self.seconds if self.seconds > 0 else 0.0

    def latency(self, q: float) -> float:
        return percentile(self.latencies_ms, q)

    def first(self, q: float) -> float:
        return percentile(self.first_ms, q)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100.0 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


class CpuMeter:
    """CPU time of the benchmark's processes and of the whole machine, from /proc (Linux)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100

    def snapshot(self) -> dict[str, float] | None:
        try:
            values = {name: self._process(pid) for name, pid in self.pids.items()}
            with open("/proc/stat") as stream:
                fields = [int(v) for v in stream.readline().split()[1:]]
        except (OSError, ValueError, IndexError):
            return None
        # user nice system idle iowait irq softirq steal: busy is all but idle and iowait
        values["_busy"] = (sum(fields[:8]) - fields[3] - fields[4]) / self.tick
        values["_wall"] = time.perf_counter()
        return values

    def _process(self, pid: int) -> float:
        with open(f"/proc/{pid}/stat") as stream:
            fields = stream.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / self.tick

    @staticmethod
    def usage(before: dict[str, float] | None, after: dict[str, float] | None
              ) -> tuple[dict[str, float], float]:
        """Percent of one core per process and ``others``; and the gateway's CPU seconds."""
        if not before or not after:
            return {}, float("nan")
        wall = after["_wall"] - before["_wall"]
        if wall <= 0:
            return {}, float("nan")
        spent = {name: after[name] - before[name] for name in before if not name.startswith("_")}
        percent = {name: 100.0 * value / wall for name, value in spent.items()}
        others = (after["_busy"] - before["_busy"]) - sum(spent.values())
        percent["others"] = max(0.0, 100.0 * others / wall)
        return percent, spent.get("gateway", float("nan"))


async def measure(kind: str, target: Target, clients: int, *, path: str, body: bytes,
                  warmup: float, duration: float, skip_first: int = 0,
                  expect_lines: int = 0, stagger: float = 0.0, pace: float = 0.0,
                  meter: CpuMeter | None = None) -> Result:
    """Run ``clients`` connections back to back for warm-up + duration; keep what follows.

    Non-streaming cases count the answers that end inside the measured window; streaming
    cases (``skip_first``) keep every stream but each connection's first, and their CPU
    figures cover the whole case.
    """
    connections = await connect(target, clients)
    loop = asyncio.get_running_loop()
    # The collector would stop the load generator for tens of ms once its heap holds many
    # samples; what the clients allocate has no cycles, so it can wait until the case is over.
    gc.collect()
    gc.disable()
    snapshots: list[dict[str, float] | None] = []
    if meter is not None:
        if skip_first:
            snapshots.append(meter.snapshot())
        else:
            loop.call_later(warmup, lambda: snapshots.append(meter.snapshot()))
            loop.call_later(warmup + duration, lambda: snapshots.append(meter.snapshot()))
    now = time.perf_counter()
    phase = Phase(request=lambda index: target.request(path, body, index),
                  record_from=now + warmup, stop_at=now + warmup + duration,
                  skip_first=skip_first, expect_lines=expect_lines, stagger=stagger,
                  pace=pace)
    waits = [client.run(phase) for client in connections]
    try:
        await asyncio.wait_for(asyncio.gather(*waits), timeout=warmup + duration + 60)
    except asyncio.TimeoutError:
        phase.errors.append("clients did not finish within a minute of the end")
    finally:
        gc.enable()
    for client in connections:
        if client.transport is not None:
            client.transport.close()
    if meter is not None and skip_first:
        snapshots.append(meter.snapshot())
    await asyncio.sleep(0.05)  # let the closes go out before the next phase
    cpu, gateway_seconds = CpuMeter.usage(*(snapshots + [None, None])[:2])
    units = phase.lines if skip_first else sum(1 for s in phase.samples
                                               if s.end <= phase.stop_at)
    samples = phase.samples
    if skip_first:
        # Streams: every recorded stream counts; the time is the span they covered.
        seconds = (max(s.end for s in samples) - min(s.start for s in samples)
                   if samples else 0.0)
        count = len(samples)
    else:
        count = sum(1 for s in samples if s.end <= phase.stop_at)
        seconds = duration
    return Result(kind, target.name, clients, count, seconds,
                  [(s.end - s.start) * 1000.0 for s in samples],
                  [(s.first - s.start) * 1000.0 for s in samples], phase.errors,
                  phase.lags_ms, cpu,
                  gateway_seconds * 1e6 / units if units and target.name != "direct"
                  else float("nan"))


# --------------------------------------------------------------------------------------------
# Report


def _fmt(value: float, digits: int = 2) -> str:
    return "n/a" if value != value else f"{value:.{digits}f}"


def print_tables(results: list[Result], chunks: int, pause_ms: float) -> None:
    print()
    print("Non-streaming POST /api/generate (stream:false)")
    print(f"{'target':<9}{'clients':>8}{'requests':>10}{'req/s':>10}{'p50 ms':>9}"
          f"{'p99 ms':>9}{'errors':>8}")
    for r in results:
        if r.kind == "generate":
            print(f"{r.target:<9}{r.clients:>8}{r.count:>10}{r.rate:>10.0f}"
                  f"{_fmt(r.latency(50), 3):>9}{_fmt(r.latency(99), 3):>9}{len(r.errors):>8}")
    print()
    print(f"Streaming POST /api/chat ({chunks} NDJSON chunks, {pause_ms:g} ms apart), times in ms")
    print(f"{'target':<9}{'streams':>8}{'starts':>11}{'measured':>9}{'TTFC p50':>10}"
          f"{'TTFC p99':>10}{'total p50':>11}{'total max':>11}{'lag p50':>9}{'lag p99':>9}"
          f"{'lag max':>9}{'errors':>7}")
    for r in results:
        if r.kind.startswith("chat"):
            starts = "-" if r.clients == 1 else "together" if r.kind == "chat-burst" \
                else "staggered"
            print(f"{r.target:<9}{r.clients:>8}{starts:>11}{r.count:>9}"
                  f"{_fmt(r.first(50), 3):>10}{_fmt(r.first(99), 3):>10}"
                  f"{_fmt(r.latency(50), 2):>11}"
                  f"{_fmt(max(r.latencies_ms, default=float('nan')), 2):>11}"
                  f"{_fmt(percentile(r.lags_ms, 50), 2):>9}{_fmt(percentile(r.lags_ms, 99), 2):>9}"
                  f"{_fmt(max(r.lags_ms, default=float('nan')), 2):>9}{len(r.errors):>7}")
    print("TTFC: time to first chunk, from sending the request to the first body byte.\n"
          "total: from sending the request to the end of the stream.\n"
          "lag: how late each line arrives against the upstream's schedule of its stream, as\n"
          "  kept by the stream's most punctual line (delays added mid-stream: batching,\n"
          "  queueing, Nagle).\n"
          "staggered: the streams start 1/N of a stream apart, so N are always in flight;\n"
          "together: all N start at the same instant, a burst the gateway serves one by one.")
    if not any(r.cpu for r in results):
        return
    print()
    print("CPU use per case, % of one core (others: everything else on the machine)")
    print(f"{'case':<12}{'target':<9}{'clients':>8}{'gateway':>9}{'upstream':>10}{'client':>8}"
          f"{'others':>8}   gateway CPU per request / line")
    for r in results:
        per = "" if r.gateway_cpu_us != r.gateway_cpu_us else (
            f"{r.gateway_cpu_us:.0f} us per {'request' if r.kind == 'generate' else 'line'}")
        print(f"{r.kind:<12}{r.target:<9}{r.clients:>8}{r.cpu.get('gateway', 0):>9.0f}"
              f"{r.cpu.get('upstream', 0):>10.0f}{r.cpu.get('client', 0):>8.0f}"
              f"{r.cpu.get('others', 0):>8.0f}   {per}")
    busy = [r.cpu.get("others", 0.0) for r in results]
    if busy and max(busy) > 15:
        print(f"warning: other processes used up to {max(busy):.0f} % of a core during a case; "
              "figures are disturbed (run again on a quiet machine)")


def goals(results: list[Result], clients: int) -> list[tuple[bool, str]]:
    def get(kind: str, target: str, n: int) -> Result:
        return next(r for r in results if (r.kind, r.target, r.clients) == (kind, target, n))

    lines: list[tuple[bool, str]] = []
    gw, direct = get("generate", "gateway", clients), get("generate", "direct", clients)
    ratio = gw.rate / direct.rate if direct.rate else 0.0
    lines.append((ratio >= GOAL_THROUGHPUT_RATIO,
                  f"throughput, {clients} clients: gateway {gw.rate:.0f} req/s = {ratio:.3f} "
                  f"of direct {direct.rate:.0f} req/s (goal >= {GOAL_THROUGHPUT_RATIO:g})"))
    gw, direct = get("generate", "gateway", 1), get("generate", "direct", 1)
    added = gw.latency(50) - direct.latency(50)
    lines.append((added <= GOAL_ADDED_P50_MS,
                  f"added p50 latency, 1 client: {added:+.3f} ms (gateway {gw.latency(50):.3f}"
                  f" ms, direct {direct.latency(50):.3f} ms; goal <= {GOAL_ADDED_P50_MS:g} ms)"))
    for n, goal in ((1, GOAL_ADDED_TTFC_1_MS), (clients, GOAL_ADDED_TTFC_N_MS)):
        gw, direct = get("chat", "gateway", n), get("chat", "direct", n)
        added = gw.first(50) - direct.first(50)
        label = "1 stream" if n == 1 else f"{n} concurrent streams"
        lines.append((added <= goal,
                      f"added time to first chunk (p50), {label}: {added:+.3f} ms (gateway "
                      f"{gw.first(50):.3f} ms, direct {direct.first(50):.3f} ms; "
                      f"goal <= {goal:g} ms)"))
    parts, ok = [], True
    for n in (1, clients):
        gw, direct = get("chat", "gateway", n), get("chat", "direct", n)
        pct = (gw.latency(50) / direct.latency(50) - 1.0) * 100.0
        ok = ok and pct <= GOAL_STREAM_OVERHEAD_PCT
        parts.append(f"{pct:+.3f} % with {n} stream{'s' if n > 1 else ''}")
    lines.append((ok, f"total stream time vs direct (p50): {', '.join(parts)} "
                      f"(goal <= {GOAL_STREAM_OVERHEAD_PCT:g} %)"))
    return lines


def notes(results: list[Result], clients: int) -> list[str]:
    """Figures without a goal that explain the ones with one."""
    found = {(r.kind, r.target, r.clients): r for r in results}
    lines = []
    for n in (1, clients):
        gw, direct = found.get(("chat", "gateway", n)), found.get(("chat", "direct", n))
        if gw and direct:
            lines.append(f"mid-stream lag p99 with {n} stream{'s' if n > 1 else ''}: gateway "
                         f"{percentile(gw.lags_ms, 99):.2f} ms, direct "
                         f"{percentile(direct.lags_ms, 99):.2f} ms (max "
                         f"{max(gw.lags_ms, default=float('nan')):.2f} / "
                         f"{max(direct.lags_ms, default=float('nan')):.2f} ms)")
    gw, direct = (found.get(("chat-burst", "gateway", clients)),
                  found.get(("chat-burst", "direct", clients)))
    if gw and direct:
        lines.append(f"{clients} streams started at once: time to first chunk p50 "
                     f"{gw.first(50):.3f} ms through the gateway, {direct.first(50):.3f} ms "
                     f"direct (p99 {gw.first(99):.3f} / {direct.first(99):.3f} ms)")
    gw, observed = found.get(("chat", "gateway", clients)), found.get(("chat", "observed", clients))
    if gw and observed and gw.gateway_cpu_us == gw.gateway_cpu_us:
        lines.append(f"gateway CPU per streamed line, {clients} streams: "
                     f"{gw.gateway_cpu_us:.1f} us relayed untouched, "
                     f"{observed.gateway_cpu_us:.1f} us observed by a filter that parses each "
                     f"line ({observed.gateway_cpu_us - gw.gateway_cpu_us:+.1f} us per observed "
                     f"line; ratio {observed.gateway_cpu_us / gw.gateway_cpu_us:.2f})")
    for n in (1, clients):
        gw = found.get(("generate", "gateway", n))
        if gw and gw.gateway_cpu_us == gw.gateway_cpu_us:
            lines.append(f"gateway CPU per non-streaming request with {n} client"
                         f"{'s' if n > 1 else ''}: {gw.gateway_cpu_us:.0f} us")
    return lines


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure runnergw against a direct connection to a fast fake Ollama.")
    parser.add_argument("--quick", action="store_true",
                        help="short measurements (about 25 s in all) for a quick look")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds measured per case (default 5, --quick 1.5)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="warm-up seconds before each non-streaming case "
                             "(default 1, --quick 0.5); streams warm up with one stream each")
    parser.add_argument("--clients", type=int, default=16,
                        help="concurrent clients / streams of the loaded cases (default 16)")
    parser.add_argument("--chunks", type=int, default=200,
                        help="NDJSON chunks per streamed answer (default 200)")
    parser.add_argument("--pause-ms", type=float, default=5.0,
                        help="upstream pause between chunks, ms (default 5: 200 tokens/s)")
    parser.add_argument("--burst", action=argparse.BooleanOptionalAction, default=None,
                        help="also time N streams that all start at once (default: on, "
                             "off with --quick)")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the gateway with py-spy during the run: FILE.svg gives a "
                             "flame graph, FILE.json speedscope, anything else collapsed stacks "
                             "(py-spy must be installed; it costs CPU, so figures drop)")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a goal is missed")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 1.5 if args.quick else 5.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.burst is None:
        args.burst = not args.quick
    if args.duration <= 0 or args.warmup < 0 or args.clients < 1 or args.chunks < 1:
        parser.error("--duration, --clients and --chunks must be positive")
    return args


async def s1_rounds(args: argparse.Namespace, names: Sequence[str], targets: dict[str, Target],
                    meters: dict[str, CpuMeter], rounds: int,
                    show: Callable[[int, str, Result], None]) -> list[Result]:
    """S1 (non-streamed ``POST /api/generate``) through each of ``names``' targets: a warm-up
    of each (clocks, caches, lazy paths), then ``rounds`` rounds of 1 and ``args.clients``
    clients, each round alternating which target goes first. ``show(round, name, result)``
    prints each result as it comes."""
    generate: dict[str, Any] = {"path": "/api/generate", "body": GENERATE_BODY}
    for name in names:
        warming = await measure("generate", targets[name], args.clients, warmup=0.0,
                                duration=args.warmup, **generate)
        if warming.errors:
            raise RuntimeError(f"{name} fails while warming up: {warming.errors[0]}")
    results: list[Result] = []
    for round_index in range(rounds):
        order = names if round_index % 2 == 0 else tuple(reversed(names))
        for clients in (1, args.clients):
            for name in order:
                result = await measure("generate", targets[name], clients, warmup=args.warmup,
                                       duration=args.duration, meter=meters[name], **generate)
                show(round_index, name, result)
                results.append(result)
    return results


def report(notes: Sequence[str], verdicts: Sequence[tuple[bool, str]], errors: int,
           began: float, check: bool, what: str = "client errors") -> int:
    """Print the INFO lines, a PASS or FAIL line per goal and the summary; the exit status:
    2 when a request failed, 1 with ``--check`` when a goal is missed, else 0."""
    print()
    for line in notes:
        print(f"INFO  {line}")
    for ok, line in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    print(f"\n{sum(ok for ok, _ in verdicts)}/{len(verdicts)} goals met; {errors} {what}; "
          f"{time.monotonic() - began:.0f} s in all")
    if errors:
        return 2
    return 1 if check and not all(ok for ok, _ in verdicts) else 0


def start_profiler(pid: int, output: str, directory: Path) -> subprocess.Popen[bytes]:
    tool = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(tool).exists():
        raise RuntimeError("py-spy is not installed (pip install py-spy)")
    suffix = Path(output).suffix.lower()
    kind = {".svg": "flamegraph", ".json": "speedscope"}.get(suffix, "raw")
    return start_process([tool, "record", "--pid", str(pid), "--output", output,
                          "--format", kind, "--rate", "250", "--nonblocking"],
                         directory / "py-spy.log", Path.cwd())


def stop_profiler(process: subprocess.Popen[bytes], directory: Path) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        process.kill()
    print(tail(directory / "py-spy.log", 3))


async def run_cases(args: argparse.Namespace, gateway: Target, direct: Target,
                    observed: Target, meter: CpuMeter) -> list[Result]:
    results = []
    generate = {"path": "/api/generate", "body": GENERATE_BODY, "meter": meter}
    chat = {"path": "/api/chat", "body": CHAT_BODY, "skip_first": 1,
            "expect_lines": args.chunks, "pace": args.pause_ms / 1000.0, "meter": meter}
    # Wake the machine up (CPU clocks, caches, both processes' lazy paths) before measuring.
    for target in (direct, gateway):
        warming = await measure("generate", target, args.clients, path="/api/generate",
                                body=GENERATE_BODY, warmup=0.0, duration=args.warmup)
        if warming.errors:
            raise RuntimeError(f"{target.name} fails while warming up: {warming.errors[0]}")
    for clients in (1, args.clients):
        for target in (direct, gateway):
            result = await measure("generate", target, clients, warmup=args.warmup,
                                   duration=args.duration, **generate)  # type: ignore[arg-type]
            report_progress(result)
            results.append(result)
    stream_seconds = max(args.chunks - 1, 0) * args.pause_ms / 1000.0
    cases = [("chat", 1, 0.0), ("chat", args.clients, stream_seconds / args.clients)]
    if args.burst and args.clients > 1:
        cases.append(("chat-burst", args.clients, 0.0))
    for kind, clients, stagger in cases:
        for target in (direct, gateway):
            result = await measure(kind, target, clients, warmup=0.0, duration=args.duration,
                                   stagger=stagger, **chat)  # type: ignore[arg-type]
            report_progress(result)
            results.append(result)
    # The same streams through a chain that observes every line, beside the plain gateway.
    for target in (gateway, observed):
        result = await measure("chat", target, args.clients, warmup=0.0,
                               duration=args.duration, stagger=stream_seconds / args.clients,
                               **chat)  # type: ignore[arg-type]
        report_progress(result)
        results.append(result)
    return results


def report_progress(result: Result) -> None:
    what = "req/s" if result.kind == "generate" else "streams/s"
    errors = f", {len(result.errors)} errors: {result.errors[0]}" if result.errors else ""
    print(f"  {result.kind:<10} {result.target:<7} x{result.clients:<3} {result.count:>7} "
          f"done, {result.rate:9.1f} {what}{errors}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    began = time.monotonic()
    upstream = gateway_process = profiler = None
    with tempfile.TemporaryDirectory(prefix="runnergw-bench-") as temporary:
        directory = Path(temporary)
        try:
            upstream, upstream_port = start_upstream(directory, args.chunks, args.pause_ms)
            gateway_port = free_port()
            paths = write_settings(directory, upstream_port, gateway_port)
            gateway_process = start_gateway(directory, paths["settings"], gateway_port)
            signing = load_signing_key(paths["signing"].read_bytes(), 4)
            tokens = [mint_token(signing, subject=f"bench-{i}", role=None, lifetime=3600.0,
                                 now=time.time()) for i in range(args.clients)]
            tls = ssl.create_default_context(cafile=str(paths["cert"]))
            tls.set_alpn_protocols(["http/1.1"])
            gateway = Target("gateway", gateway_port, tls, PREFIX, tokens)
            direct = Target("direct", upstream_port, None, "", [])
            observed = Target("observed", gateway_port, tls, OBSERVED_PREFIX, tokens)
            print(f"runnergw bench: python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs, gateway pid {gateway_process.pid} "
                  f"(https://{HOST}:{gateway_port}{PREFIX}), upstream pid {upstream.pid} "
                  f"(http://{HOST}:{upstream_port}); {args.duration:g} s per case, "
                  f"warm-up {args.warmup:g} s", flush=True)
            if args.profile:
                profiler = start_profiler(gateway_process.pid, args.profile, directory)
            meter = CpuMeter({"gateway": gateway_process.pid, "upstream": upstream.pid,
                              "client": os.getpid()})
            results = asyncio.run(run_cases(args, gateway, direct, observed, meter))
            if profiler is not None:
                stop_profiler(profiler, directory)
                profiler = None
            if gateway_process.poll() is not None:
                raise RuntimeError("runnergw died during the run:\n"
                                   + tail(directory / "gateway.log"))
            audit_lines = sum(1 for _ in open(paths["audit"], "rb"))
        except Exception as e:  # noqa: BLE001 - report and clean up
            print(f"bench failed: {e}", file=sys.stderr)
            return 2
        finally:
            if profiler is not None:
                stop_profiler(profiler, directory)
            stop_process(gateway_process)
            stop_process(upstream)
    print_tables(results, args.chunks, args.pause_ms)
    gateway_requests = sum(r.count for r in results if r.target == "gateway")
    print(f"\naudit trail: {audit_lines} lines written (>= {gateway_requests} measured gateway "
          f"requests, warm-up included)")
    return report(notes(results, args.clients), goals(results, args.clients),
                  sum(len(r.errors) for r in results), began, args.check)


if __name__ == "__main__":
    sys.exit(main())
