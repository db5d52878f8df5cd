"""What runnergw's pipelines terminal costs: job throughput against bare process spawning, and
the gateway's memory while it receives a huge upload and returns a huge output.

One run writes, into a temporary directory, model descriptors, a SaaS RSA key pair (it signs
the RS256 server and user tokens), a node key pair (it signs the replies), a self-signed TLS
certificate and a settings file, then:

1. starts runnergw (``twistd -n --pidfile= runnergw``, TLS, the default pipeline filter chain
   ``websaas, role, audit``) in its own process and drives keep-alive HTTPS clients from this
   process, each POSTing a multipart request with a 1 KiB upload to a model whose command is
   ``cp <media> <out>`` (4 jobs at once, 64 waiting), back to back;
2. runs, in a separate process with its own Twisted reactor, the same ``cp`` on the same kind
   of 1 KiB file, 4 at a time, spawned and reaped with ``reactor.spawnProcess``: the rate a
   reactor can run that command at all, the baseline of the throughput goal;
3. starts a fresh runnergw for each memory case and samples its resident set size while it
   receives a 1 GiB upload (streamed by the client, never held in memory) and while it
   returns a 300 MiB output (about 400 MiB of base64, read and discarded by the client).

All traffic stays on 127.0.0.1.  It is a benchmark, not a test: figures depend on the machine
and on whatever else runs on it.

Usage: ``python bench/pipeline_bench.py [--quick] [--duration S] [--check]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import re
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import gateway_bench as gb  # noqa: E402  (puts the repository on sys.path too)
import jwt  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import rsa  # noqa: E402

HOST = gb.HOST
CP_MODEL = "bench-cp"
UPLOAD_MODEL = "bench-upload"
OUTPUT_MODEL = "bench-output"
BOUNDARY = "runnergw-bench-boundary"
UPLOAD_BYTES = 1024
"""Size of the upload of the throughput case."""
CHUNK = 1 << 20
"""Bytes per piece of the streamed huge upload."""
JOB_CONCURRENCY = 4
QUEUE_SIZE = 64
MIB = 1 << 20
GIB = 1 << 30

GOAL_SPAWN_RATIO = 0.5
GOAL_RSS_GROWTH_MIB = 64.0


# --------------------------------------------------------------------------------------------
# Set-up: keys, tokens, descriptors, settings


class Saas:
    """The SaaS side: an RSA key pair that signs server and user tokens, and the node's pair."""

    def __init__(self, directory: Path) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.node_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.public_path = directory / "saas_public.pem"
        self.public_path.write_bytes(self.key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
        self.node_private_path = directory / "node_private.pem"
        self.node_private_path.write_bytes(self.node_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        self.node_private_path.chmod(0o600)
        self.server_id = "base64:" + base64.b64encode(os.urandom(24)).decode()

    def headers(self, subject: str, lifetime: float = 3000.0) -> str:
        """``Authorization`` and ``X-User-Token`` header lines, as the SaaS sends them."""
        now = time.time()
        server = jwt.encode({"iss": "saas", "iat": int(now), "exp": int(now + lifetime)},
                            self.key, algorithm="RS256")
        user = jwt.encode({"sub": subject, "role": "pro", "iat": int(now),
                           "exp": int(now + lifetime)}, self.key, algorithm="RS256")
        return f"Authorization: Bearer {server}\r\nX-User-Token: {user}\r\n"

    def check_reply_token(self, token: str) -> dict[str, Any]:
        """The claims of a reply token, checked against the node's public key."""
        return jwt.decode(token, self.node_key.public_key(), algorithms=["RS256"],
                          options={"verify_aud": False})


def descriptor(endpoint: str, command: str, fields: list[dict[str, Any]],
               output_format: str) -> dict[str, Any]:
    return {
        "title": f"runnergw bench: {endpoint}",
        "fields": fields,
        "output": [{"id": "out", "type": "file", "format": output_format}],
        "actions": {"submit": {"method": "POST",
                               "endpoint": f"https://node.example.org/{endpoint}/"}},
        "command": command,
    }


def write_models(directory: Path, upload_mib: int, output_mib: int) -> None:
    directory.mkdir()
    media = {"id": "media", "type": "fileUpload", "required": True}
    models = {
        CP_MODEL: descriptor(CP_MODEL, "cp <media> <out>", [dict(media, maxSize=1)], "bin"),
        UPLOAD_MODEL: descriptor(
            UPLOAD_MODEL,
            "python3 -c \"import sys; open(sys.argv[2], 'w').write('ok')\" <media> <out>",
            [dict(media, maxSize=upload_mib + 76)], "txt"),
        OUTPUT_MODEL: descriptor(
            OUTPUT_MODEL,
            "python3 -c \"import sys; f = open(sys.argv[1], 'wb'); "
            f"[f.write(bytes(1 << 20)) for _ in range({output_mib})]\" <out>",
            [], "bin"),
    }
    for name, document in models.items():
        (directory / f"{name}.json").write_text(json.dumps(document, indent=2) + "\n")


@dataclass
class Setup:
    directory: Path
    saas: Saas
    cert: Path
    key: Path
    models: Path
    jobs: Path
    plain_http: bool = False
    job_niceness: int | None = None

    def settings(self, name: str, port: int) -> Path:
        """A settings file for a gateway on ``port`` serving the bench models."""
        document = {  # JSON is YAML
            "logging": {"level": "info"},
            "server": ({"address": f"{HOST}:{port}"} if self.plain_http else
                       {"address": f"{HOST}:{port}", "certificatePath": str(self.cert),
                        "keyPath": str(self.key)}),
            "audit": {"path": str(self.directory / f"audit-{name}.log")},
            "metrics": {"address": f"{HOST}:0"},  # never the default port of a real one
            "pipelines": {
                "modelsPath": str(self.models),
                "jobsPath": str(self.jobs),
                "saasPublicKeyPath": str(self.saas.public_path),
                "nodePrivateKeyPath": str(self.saas.node_private_path),
                "serverId": self.saas.server_id,
                "models": {CP_MODEL: {"concurrency": JOB_CONCURRENCY,
                                      "queueSize": QUEUE_SIZE}},
            },
        }
        if self.job_niceness is not None:
            document["pipelines"]["jobNiceness"] = self.job_niceness
        path = self.directory / f"settings-{name}.yaml"
        path.write_text(json.dumps(document, indent=2) + "\n")
        return path


def make_setup(directory: Path, upload_mib: int, output_mib: int, files: Path) -> Setup:
    """``files``: where the jobs directory goes (the baseline's files go there too)."""
    cert, key = directory / "gateway.pem", directory / "gateway.key"
    gb.write_self_signed(cert, key)
    models, jobs = directory / "models-enabled", files / "jobs"
    write_models(models, upload_mib, output_mib)
    jobs.mkdir(mode=0o700)
    return Setup(directory, Saas(directory), cert, key, models, jobs)


@dataclass
class Gateway:
    name: str
    process: subprocess.Popen[bytes]
    port: int
    directory: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"runnergw ({self.name}) died:\n"
                               + gb.tail(self.directory / "gateway.log"))


def launch_gateway(setup: Setup, name: str) -> Gateway:
    """A fresh runnergw process of its own (its own log directory); returns once it listens."""
    directory = setup.directory / f"gateway-{name}"
    directory.mkdir()
    port = gb.free_port()
    process = gb.start_gateway(directory, setup.settings(name, port), port)
    return Gateway(name, process, port, directory)


# --------------------------------------------------------------------------------------------
# Requests


def form_part(name: str, value: str) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
            f"{value}\r\n").encode()


def file_part_head(name: str, filename: str) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; '
            f'filename="{filename}"\r\nContent-Type: application/octet-stream\r\n\r\n').encode()


CLOSING = f"--{BOUNDARY}--\r\n".encode()


def request_head(endpoint: str, port: int, auth: str, length: int) -> bytes:
    return (f"POST /{endpoint}/ HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
            f"User-Agent: runnergw-bench\r\nAccept: application/json\r\n{auth}"
            f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n"
            f"Content-Length: {length}\r\n\r\n").encode("latin-1")


def small_body(upload: bytes | None) -> bytes:
    """``input_form`` (empty), ``command`` (ignored by the node) and maybe one upload."""
    parts = [form_part("input_form", "{}"), form_part("command", "ignored")]
    if upload is not None:
        parts.append(file_part_head("media", "media.bin") + upload + b"\r\n")
    return b"".join(parts) + CLOSING


class PipelineTarget(gb.Target):
    """The gateway's ``cp`` route, for ``gateway_bench.measure``: a multipart request with the
    SaaS tokens of the client's own user."""

    def __init__(self, port: int, tls: ssl.SSLContext | None, auth: list[str]) -> None:
        super().__init__("gateway", port, tls, "", auth)

    def request(self, path: str, body: bytes, index: int) -> bytes:
        return request_head(path.strip("/"), self.port, self.tokens[index % len(self.tokens)],
                            len(body)) + body


class CpuMeter(gb.CpuMeter):
    """``gateway_bench.CpuMeter`` plus the gateway's job launcher (``launcher``) and the jobs
    it reaped (``jobs``)."""

    def __init__(self, pids: dict[str, int], gateway_pid: int) -> None:
        super().__init__(pids)
        self.gateway_pid = gateway_pid
        self.launcher_pid: int | None = None

    def snapshot(self) -> dict[str, float] | None:
        values = super().snapshot()
        if values is None:
            return None
        try:
            if self.launcher_pid is None:
                self.launcher_pid = launcher_of(self.gateway_pid)
            values["launcher"] = self._process(self.launcher_pid)
            values["jobs"] = children_cpu(self.launcher_pid, self.tick)
        except (OSError, ValueError, IndexError):
            return None
        return values


def launcher_of(gateway_pid: int) -> int:
    """The pid of the gateway's job launcher (a child running ``launcherd.py``)."""
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stream:
                parent = int(stream.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{name}/cmdline", "rb") as stream:
                command = stream.read()
        except OSError:
            continue
        if parent == gateway_pid and b"launcherd" in command:
            return int(name)
    raise OSError(f"the gateway {gateway_pid} runs no job launcher")


def children_cpu(pid: int, tick: float) -> float:
    """CPU seconds of the reaped children of ``pid`` (``cutime`` + ``cstime``)."""
    with open(f"/proc/{pid}/stat") as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return (int(fields[13]) + int(fields[14])) / tick


def open_tls(port: int, tls: ssl.SSLContext | None) -> socket.socket:
    """A connection to the gateway: TLS, or plain HTTP when ``tls`` is None."""
    raw = socket.create_connection((HOST, port), timeout=120)
    raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return raw if tls is None else tls.wrap_socket(raw, server_hostname=HOST)


@dataclass
class Reply:
    """A response read by ``read_reply``: its status, body size, and the start and end of it."""

    status: int
    size: int
    head: bytes
    tail: bytes


def read_reply(connection: socket.socket, keep: int = 65536) -> Reply:
    """Read one response to its end, discarding the body but its first and last bytes."""
    buffer = bytearray()
    while b"\r\n\r\n" not in buffer:
        data = connection.recv(65536)
        if not data:
            raise ConnectionError("the connection closed before the response head")
        buffer += data
    end = buffer.index(b"\r\n\r\n")
    head = bytes(buffer[:end]).lower()
    status = int(head[9:12])
    del buffer[:end + 4]
    first, last, size = bytearray(), bytearray(), 0

    def body(piece: bytes | bytearray | memoryview) -> None:
        nonlocal size
        size += len(piece)
        if len(first) < keep:
            first.extend(piece[:keep - len(first)])
        last.extend(piece[-keep:])
        if len(last) > 2 * keep:
            del last[:-keep]

    def more() -> bytes:
        data = connection.recv(1 << 20)
        if not data:
            raise ConnectionError("the connection closed in the middle of the response")
        return data

    if b"transfer-encoding: chunked" in head:
        while True:
            while b"\r\n" not in buffer:
                buffer += more()
            line_end = buffer.index(b"\r\n")
            length = int(bytes(buffer[:line_end]).split(b";", 1)[0], 16)
            del buffer[:line_end + 2]
            if length == 0:
                while not buffer.startswith(b"\r\n") and b"\r\n\r\n" not in buffer:
                    buffer += more()
                break
            while length:
                if not buffer:
                    buffer += more()
                take = min(length, len(buffer))
                body(memoryview(buffer)[:take])
                del buffer[:take]
                length -= take
            while len(buffer) < 2:
                buffer += more()
            del buffer[:2]
    else:
        found = re.search(rb"(?:^|\r\n)content-length:\s*(\d+)", head)
        remaining = int(found.group(1)) if found else 0
        while remaining:
            if not buffer:
                buffer += more()
            take = min(remaining, len(buffer))
            body(memoryview(buffer)[:take])
            del buffer[:take]
            remaining -= take
    return Reply(status, size, bytes(first), bytes(last[-keep:]))


# --------------------------------------------------------------------------------------------
# Case 1: job throughput through the gateway


async def measure_throughput(target: PipelineTarget, args: argparse.Namespace,
                             meter: CpuMeter) -> gb.Result:
    body = small_body(os.urandom(UPLOAD_BYTES))
    path = f"/{CP_MODEL}/"
    warming = await gb.measure("cp", target, args.clients, path=path, body=body, warmup=0.0,
                               duration=args.warmup)
    if warming.errors:
        raise RuntimeError(f"the gateway fails while warming up: {warming.errors[0]}")
    return await gb.measure("cp", target, args.clients, path=path, body=body,
                            warmup=args.warmup, duration=args.duration, meter=meter)


def check_one_reply(gateway: Gateway, tls: ssl.SSLContext | None, saas: Saas) -> str:
    """One ``cp`` request, its reply checked in full (output, signed token)."""
    upload = os.urandom(UPLOAD_BYTES)
    body = small_body(upload)
    with open_tls(gateway.port, tls) as connection:
        connection.sendall(request_head(CP_MODEL, gateway.port, saas.headers("check"),
                                        len(body)) + body)
        reply = read_reply(connection, keep=1 << 20)
    if reply.status != 200:
        raise RuntimeError(f"the cp model answers {reply.status}: {reply.head[:300]!r}")
    document = json.loads(reply.head)
    expected = "data:application/octet-stream;base64," + base64.b64encode(upload).decode()
    if document["outputs"].get("out") != expected:
        raise RuntimeError("the cp model's output is not the upload")
    saas.check_reply_token(document["token"])
    return f"checked: the reply carries the uploaded bytes and a valid node token " \
           f"({reply.size} bytes)"


# --------------------------------------------------------------------------------------------
# Case 2: the baseline, in its own process


def spawn_baseline(directory: Path, duration: float, warmup: float,
                   concurrency: int) -> dict[str, Any]:
    """Run ``cp <1 KiB file> <out>`` ``concurrency`` at a time with a Twisted reactor."""
    from twisted.internet import reactor
    from twisted.internet.protocol import ProcessProtocol

    directory.mkdir(parents=True, exist_ok=True)
    source = directory / "media.bin"
    source.write_bytes(os.urandom(UPLOAD_BYTES))
    cp = shutil.which("cp") or "/bin/cp"
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    state: dict[str, Any] = {"count": 0, "started": 0, "failed": 0, "latencies": [],
                             "errors": []}
    begin = time.perf_counter()
    record_from, stop_at = begin + warmup, begin + warmup + duration
    snapshots: list[tuple[float, os.times_result]] = []

    class Job(ProcessProtocol):
        def __init__(self, output: Path) -> None:
            self.output = output
            self.started = time.perf_counter()

        def connectionMade(self) -> None:
            self.transport.closeStdin()

        def processEnded(self, reason: Any) -> None:
            now = time.perf_counter()
            code = getattr(reason.value, "exitCode", None)
            try:
                size = self.output.stat().st_size
                self.output.unlink()
            except OSError:
                size = -1
            if code != 0 or size != UPLOAD_BYTES:
                state["failed"] += 1
                if len(state["errors"]) < 3:
                    state["errors"].append(f"exit {code}, output size {size}")
            elif self.started >= record_from and now <= stop_at:
                state["count"] += 1
                state["latencies"].append((now - self.started) * 1000.0)
            if now < stop_at:
                launch()
            else:
                state["running"] -= 1
                if not state["running"]:
                    reactor.stop()

    def launch() -> None:
        state["started"] += 1
        output = directory / f"out-{state['started']}.bin"
        reactor.spawnProcess(Job(output), cp, [cp, str(source), str(output)], env=env,
                             path=None, childFDs={0: "w", 1: "r", 2: "r"})

    def mark() -> None:
        snapshots.append((time.perf_counter(), os.times()))

    state["running"] = concurrency
    for _ in range(concurrency):
        reactor.callWhenRunning(launch)
    reactor.callLater(warmup, mark)
    reactor.callLater(warmup + duration, mark)
    reactor.run()
    (wall0, t0), (wall1, t1) = snapshots[:2]
    count = state["count"]
    own = (t1.user + t1.system) - (t0.user + t0.system)
    children = (t1.children_user + t1.children_system) - (t0.children_user + t0.children_system)
    return {"count": count, "seconds": duration, "failed": state["failed"],
            "errors": state["errors"], "latencies_ms": state["latencies"],
            "own_cpu_us": own * 1e6 / count if count else float("nan"),
            "children_cpu_us": children * 1e6 / count if count else float("nan"),
            "own_cpu_pct": 100.0 * own / (wall1 - wall0),
            "children_cpu_pct": 100.0 * children / (wall1 - wall0)}


def run_baseline(directory: Path, duration: float, warmup: float) -> dict[str, Any]:
    """``spawn_baseline`` in a new Python process (so that it has a reactor of its own)."""
    argv = [sys.executable, str(Path(__file__).resolve()), "--spawn-baseline", str(directory),
            "--duration", str(duration), "--warmup", str(warmup)]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=duration + warmup + 120, check=False)
    if done.returncode != 0:
        raise RuntimeError("the spawn baseline failed:\n"
                           + done.stderr.decode(errors="replace")[-2000:])
    return json.loads(done.stdout)


# --------------------------------------------------------------------------------------------
# Case 3: memory


class RssSampler(threading.Thread):
    """Reads ``VmRSS`` and ``VmHWM`` of a process every ``interval`` seconds."""

    def __init__(self, pid: int, interval: float = 0.02) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.peak_rss = 0
        self.samples = 0
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            try:
                rss, _ = read_memory(self.pid)
            except OSError:
                return
            self.peak_rss = max(self.peak_rss, rss)
            self.samples += 1
            self.halt.wait(self.interval)

    def stop(self) -> None:
        self.halt.set()
        self.join()


def read_memory(pid: int) -> tuple[int, int]:
    """``VmRSS`` and ``VmHWM`` of a process, in bytes."""
    values = {}
    with open(f"/proc/{pid}/status") as stream:
        for line in stream:
            if line.startswith(("VmRSS:", "VmHWM:")):
                name, amount, _ = line.split()
                values[name] = int(amount) * 1024
    return values["VmRSS:"], values["VmHWM:"]


def reset_peak(pid: int) -> bool:
    """Reset the kernel's ``VmHWM`` of a process to its current RSS (Linux >= 4.0)."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as stream:
            stream.write("5")
        return True
    except OSError:
        return False


@dataclass
class MemoryResult:
    case: str
    size: int
    """Bytes uploaded, or raw output bytes returned."""
    seconds: float
    rss_before: int
    peak: int
    """The highest resident set size seen during the request (sampled, or the kernel's peak)."""
    hwm_reset: bool
    samples: int
    gateway_cpu: float
    status: int
    check: str
    errors: list[str] = field(default_factory=list)

    @property
    def growth_mib(self) -> float:
        return max(0, self.peak - self.rss_before) / MIB


def measure_memory(case: str, gateway: Gateway, size: int, request: Any) -> MemoryResult:
    """Run ``request()`` (which returns status, size and a check text) and watch the RSS."""
    tick = os.sysconf("SC_CLK_TCK")
    rss_before, hwm_before = read_memory(gateway.pid)
    reset = reset_peak(gateway.pid)
    if reset:
        rss_before, hwm_before = read_memory(gateway.pid)
    cpu_before = process_cpu(gateway.pid, tick)
    sampler = RssSampler(gateway.pid)
    sampler.start()
    began = time.perf_counter()
    errors: list[str] = []
    status, check = 0, ""
    try:
        status, check = request()
    except (OSError, ValueError, RuntimeError) as e:
        errors.append(f"{type(e).__name__}: {e}")
    finally:
        seconds = time.perf_counter() - began
        sampler.stop()
    _, hwm_after = read_memory(gateway.pid)
    cpu = process_cpu(gateway.pid, tick) - cpu_before
    # The kernel's peak counts only when it is this request's: reset before, or risen since.
    peak = sampler.peak_rss
    if reset or hwm_after > hwm_before:
        peak = max(peak, hwm_after)
    if status != 200 and not errors:
        errors.append(f"status {status}: {check}")
    return MemoryResult(case, size, seconds, rss_before, peak, reset, sampler.samples, cpu,
                        status, check, errors)


def process_cpu(pid: int, tick: float) -> float:
    with open(f"/proc/{pid}/stat") as stream:
        fields = stream.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / tick


def warm_up(gateway: Gateway, tls: ssl.SSLContext | None, saas: Saas, endpoint: str,
            upload: bytes | None) -> None:
    """A small request, so that lazily built code paths exist before the RSS is read."""
    body = small_body(upload)
    with open_tls(gateway.port, tls) as connection:
        connection.sendall(request_head(endpoint, gateway.port, saas.headers("warm"),
                                        len(body)) + body)
        reply = read_reply(connection)
    if reply.status != 200:
        raise RuntimeError(f"{endpoint} answers {reply.status} while warming up: "
                           f"{reply.head[:300]!r}")


def big_upload(gateway: Gateway, tls: ssl.SSLContext | None, saas: Saas, size: int
               ) -> tuple[int, str]:
    """Stream a ``size``-byte upload to the upload model, one reused 1 MiB block at a time."""
    head = b"".join([form_part("input_form", "{}"), file_part_head("media", "huge.bin")])
    tail = b"\r\n" + CLOSING
    block = os.urandom(CHUNK)
    length = len(head) + size + len(tail)
    with open_tls(gateway.port, tls) as connection:
        connection.sendall(request_head(UPLOAD_MODEL, gateway.port, saas.headers("upload"),
                                        length) + head)
        sent_early = None
        try:
            remaining = size
            while remaining:
                piece = block if remaining >= CHUNK else block[:remaining]
                connection.sendall(piece)
                remaining -= len(piece)
            connection.sendall(tail)
        except OSError as e:  # the gateway refused early: read why
            sent_early = e
        reply = read_reply(connection)
    if reply.status != 200:
        return reply.status, reply.head[:300].decode(errors="replace")
    if sent_early is not None:
        raise RuntimeError(f"the upload was cut short ({sent_early}) yet answered 200")
    document = json.loads(reply.head)
    if document["outputs"].get("out") != "data:text/plain;base64," + \
            base64.b64encode(b"ok").decode():
        raise RuntimeError(f"unexpected output: {str(document['outputs'])[:200]}")
    saas.check_reply_token(document["token"])
    return 200, f"{size / MIB:.0f} MiB uploaded, the job's output and the node token checked"


def big_output(gateway: Gateway, tls: ssl.SSLContext | None, saas: Saas, size: int
               ) -> tuple[int, str]:
    """Ask the output model for ``size`` bytes of zeros; read the reply, discarding it."""
    body = small_body(None)
    with open_tls(gateway.port, tls) as connection:
        connection.sendall(request_head(OUTPUT_MODEL, gateway.port, saas.headers("output"),
                                        len(body)) + body)
        reply = read_reply(connection)
    if reply.status != 200:
        return reply.status, reply.head[:300].decode(errors="replace")
    prefix = b'{"outputs": {"out": "data:application/octet-stream;base64,'
    match = re.search(rb'"\}, "token": "([A-Za-z0-9_.-]+)"\}$', reply.tail)
    if not reply.head.startswith(prefix) or match is None:
        raise RuntimeError(f"unexpected reply: {reply.head[:120]!r} … {reply.tail[-200:]!r}")
    encoded = reply.size - len(prefix) - (len(reply.tail) - match.start())
    expected = 4 * ((size + 2) // 3)
    if encoded != expected:
        raise RuntimeError(f"{encoded} bytes of base64, {expected} expected")
    if not reply.head[len(prefix):].startswith(b"A" * 64):
        raise RuntimeError("the output does not start with zeros")
    saas.check_reply_token(match.group(1).decode())
    return 200, (f"{reply.size / MIB:.1f} MiB of reply read ({encoded} bytes of base64 = "
                 f"{size / MIB:.0f} MiB), the node token checked")


def run_memory_cases(setup: Setup, tls: ssl.SSLContext | None, args: argparse.Namespace,
                     processes: list[Gateway]) -> tuple[list[MemoryResult], list[str]]:
    results: list[MemoryResult] = []
    skipped: list[str] = []
    free = shutil.disk_usage(setup.jobs).free
    upload = args.upload_mib * MIB
    output = args.output_mib * MIB
    if free < max(3 * GIB, 2 * upload):
        skipped.append(f"upload of {args.upload_mib} MiB skipped: {free / GIB:.1f} GiB free "
                       f"in the temporary directory, it needs {max(3 * GIB, 2 * upload) / GIB:.0f}")
    else:
        gateway = launch_gateway(setup, "upload")
        processes.append(gateway)
        warm_up(gateway, tls, setup.saas, CP_MODEL, os.urandom(UPLOAD_BYTES))
        warm_up(gateway, tls, setup.saas, UPLOAD_MODEL, os.urandom(UPLOAD_BYTES))
        print(f"  memory: {args.upload_mib} MiB upload to gateway pid {gateway.pid} …",
              flush=True)
        result = measure_memory("upload", gateway, upload,
                                lambda: big_upload(gateway, tls, setup.saas, upload))
        report_memory(result)
        results.append(result)
        gateway.check_alive()
        gb.stop_process(gateway.process)
    free = shutil.disk_usage(setup.jobs).free
    if free < 2 * output + GIB:
        skipped.append(f"output of {args.output_mib} MiB skipped: {free / GIB:.1f} GiB free "
                       "in the temporary directory")
    else:
        gateway = launch_gateway(setup, "output")
        processes.append(gateway)
        warm_up(gateway, tls, setup.saas, CP_MODEL, os.urandom(UPLOAD_BYTES))
        print(f"  memory: {args.output_mib} MiB output from gateway pid {gateway.pid} …",
              flush=True)
        result = measure_memory("output", gateway, output,
                                lambda: big_output(gateway, tls, setup.saas, output))
        report_memory(result)
        results.append(result)
        gateway.check_alive()
        gb.stop_process(gateway.process)
    return results, skipped


def report_memory(result: MemoryResult) -> None:
    errors = f", error: {result.errors[0]}" if result.errors else ""
    print(f"  memory: {result.case} done in {result.seconds:.1f} s, peak RSS growth "
          f"{result.growth_mib:.1f} MiB{errors}", flush=True)


# --------------------------------------------------------------------------------------------
# Report


def print_report(through: gb.Result, baseline: dict[str, Any], memory: list[MemoryResult],
                 args: argparse.Namespace) -> None:
    print()
    print(f"Jobs: POST /{CP_MODEL}/ (1 KiB upload, command cp <media> <out>, "
          f"{JOB_CONCURRENCY} jobs at once) against the same cp spawned by a bare reactor")
    print(f"{'what':<28}{'clients':>8}{'jobs':>8}{'jobs/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
          f"{'errors':>8}")
    label = "gateway (HTTP + cp)" if args.plain_http else "gateway (HTTPS + cp)"
    print(f"{label:<28}{through.clients:>8}{through.count:>8}"
          f"{through.rate:>9.1f}{gb._fmt(through.latency(50), 2):>9}"
          f"{gb._fmt(through.latency(99), 2):>9}{len(through.errors):>8}")
    lat = baseline["latencies_ms"]
    rate = baseline["count"] / baseline["seconds"]
    print(f"{'bare reactor spawn of cp':<28}{'-':>8}{baseline['count']:>8}{rate:>9.1f}"
          f"{gb._fmt(gb.percentile(lat, 50), 2):>9}{gb._fmt(gb.percentile(lat, 99), 2):>9}"
          f"{baseline['failed']:>8}")
    print("jobs: requests (spawns) that started after the warm-up and ended inside the "
          f"{args.duration:g} s window;\n  gateway latency: request sent -> last reply byte "
          "(queueing included); spawn latency: spawn -> reaped.")
    if through.cpu:
        cpu = through.cpu
        jobs_us = jobs_cpu_us(through, args.duration)
        print()
        print("CPU, % of one core during the measured window")
        launcher_us = launcher_cpu_us(through, args.duration)
        print(f"{'what':<28}{'process':>9}{'launcher':>10}{'its jobs':>10}{'client':>8}"
              f"{'others':>8}   per job: process / launcher / its jobs")
        print(f"{'gateway':<28}{cpu.get('gateway', 0):>9.0f}{cpu.get('launcher', 0):>10.0f}"
              f"{cpu.get('jobs', 0):>10.0f}{cpu.get('client', 0):>8.0f}"
              f"{cpu.get('others', 0):>8.0f}   {gb._fmt(through.gateway_cpu_us, 0)} us / "
              f"{gb._fmt(launcher_us, 0)} us / {gb._fmt(jobs_us, 0)} us")
        print(f"{'bare reactor spawn':<28}{baseline['own_cpu_pct']:>9.0f}{'-':>10}"
              f"{baseline['children_cpu_pct']:>10.0f}{'-':>8}{'-':>8}   "
              f"{gb._fmt(baseline['own_cpu_us'], 0)} us / - / "
              f"{gb._fmt(baseline['children_cpu_us'], 0)} us")
        print("launcher: the gateway's job launcher process; its jobs: CPU of the children it "
              "reaped (cp).")
        if cpu.get("others", 0) > 15:
            print(f"warning: other processes used {cpu['others']:.0f} % of a core during the "
                  "gateway case; figures are disturbed (run again on a quiet machine)")
    if memory:
        print()
        print("Gateway memory (a fresh gateway per case, after one small warm-up request)")
        print(f"{'case':<30}{'seconds':>8}{'MiB/s':>8}{'RSS before':>12}{'peak RSS':>10}"
              f"{'growth':>9}{'gw CPU s':>10}{'samples':>9}")
        for m in memory:
            what = (f"upload {m.size / MIB:.0f} MiB" if m.case == "upload"
                    else f"output {m.size / MIB:.0f} MiB (base64)")
            speed = m.size / MIB / m.seconds if m.seconds else float("nan")
            print(f"{what:<30}{m.seconds:>8.1f}{speed:>8.0f}{m.rss_before / MIB:>12.1f}"
                  f"{m.peak / MIB:>10.1f}{m.growth_mib:>9.1f}{m.gateway_cpu:>10.2f}"
                  f"{m.samples:>9}")
        print("MiB: resident set size; peak: the highest VmRSS sampled every 20 ms, or the "
              "kernel's VmHWM\n  when it could be reset before the request "
              f"({'it was' if all(m.hwm_reset for m in memory) else 'it was not always'}).")


def median_round(rounds: list[tuple[gb.Result, dict[str, Any]]]
                 ) -> tuple[gb.Result, dict[str, Any]]:
    """The round whose gateway/baseline ratio is the median (the lower one of an even
    number)."""
    def ratio(round_: tuple[gb.Result, dict[str, Any]]) -> float:
        through, baseline = round_
        rate = baseline["count"] / baseline["seconds"]
        return through.rate / rate if rate else 0.0
    ordered = sorted(rounds, key=ratio)
    return ordered[(len(ordered) - 1) // 2]


def jobs_cpu_us(through: gb.Result, duration: float, what: str = "jobs") -> float:
    """CPU time of the gateway's jobs (or of ``what``) per measured request, from the CPU
    shares."""
    share = through.cpu.get(what)
    if share is None or not through.count:
        return float("nan")
    return share / 100.0 * duration * 1e6 / through.count


def launcher_cpu_us(through: gb.Result, duration: float) -> float:
    """CPU time of the gateway's job launcher per measured request."""
    return jobs_cpu_us(through, duration, "launcher")


def goals(through: gb.Result, baseline: dict[str, Any], memory: list[MemoryResult]
          ) -> list[tuple[bool, str]]:
    lines = []
    rate = baseline["count"] / baseline["seconds"]
    ratio = through.rate / rate if rate else 0.0
    lines.append((ratio >= GOAL_SPAWN_RATIO,
                  f"job throughput, {through.clients} clients: gateway {through.rate:.1f} req/s "
                  f"= {ratio:.3f} of a bare reactor spawning cp, {rate:.1f}/s "
                  f"(goal >= {GOAL_SPAWN_RATIO:g})"))
    for m in memory:
        what = (f"{m.size / MIB:.0f} MiB upload" if m.case == "upload"
                else f"{m.size / MIB:.0f} MiB output")
        ok = m.growth_mib < GOAL_RSS_GROWTH_MIB and not m.errors
        lines.append((ok, f"peak RSS growth, {what}: {m.growth_mib:.1f} MiB "
                          f"(goal < {GOAL_RSS_GROWTH_MIB:g} MiB)"
                          + (f"; failed: {m.errors[0]}" if m.errors else "")))
    return lines


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Measure runnergw's pipelines terminal: job throughput against bare "
                    "process spawning, and memory with a huge upload and a huge output.")
    parser.add_argument("--quick", action="store_true",
                        help="short measurements and smaller memory cases (256 MiB upload, "
                             "100 MiB output)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds measured for the gateway and for the baseline "
                             "(default 5, --quick 1.5)")
    parser.add_argument("--warmup", type=float, default=None,
                        help="warm-up seconds before each (default 1, --quick 0.5)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="baseline and gateway measured in turn this many times; the goal "
                             "is judged on the median round (default 3, --quick 1)")
    parser.add_argument("--files-dir", metavar="DIR",
                        help="put the gateway's jobs directory and the baseline's files under "
                             "DIR, to compare file systems (default: the bench's temporary "
                             "directory)")
    parser.add_argument("--job-niceness", type=int, default=None, metavar="N",
                        help="the gateway's pipelines.jobNiceness (default: the gateway's, 10)")
    parser.add_argument("--clients", type=int, default=16,
                        help="concurrent keep-alive clients of the throughput case (default 16)")
    parser.add_argument("--upload-mib", type=int, default=None,
                        help="size of the huge upload in MiB (default 1024, --quick 256)")
    parser.add_argument("--output-mib", type=int, default=None,
                        help="size of the huge output in MiB before base64 "
                             "(default 300, --quick 100)")
    parser.add_argument("--memory", action=argparse.BooleanOptionalAction, default=True,
                        help="run the memory cases (default: on)")
    parser.add_argument("--profile", metavar="FILE",
                        help="record the gateway with py-spy during the throughput case: "
                             "FILE.svg flame graph, FILE.json speedscope, else collapsed stacks")
    parser.add_argument("--check", action="store_true",
                        help="exit with status 1 when a goal is missed")
    parser.add_argument("--plain-http", action="store_true",
                        help="serve and call the gateway in plain HTTP, as the old node ran "
                             "(default: HTTPS)")
    parser.add_argument("--spawn-baseline", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rounds is None:
        args.rounds = 1 if args.quick else 3
    if args.duration is None:
        args.duration = 1.5 if args.quick else 4.0
    if args.warmup is None:
        args.warmup = 0.5 if args.quick else 1.0
    if args.upload_mib is None:
        args.upload_mib = 256 if args.quick else 1024
    if args.output_mib is None:
        args.output_mib = 100 if args.quick else 300
    if (args.duration <= 0 or args.warmup < 0 or args.clients < 1 or args.upload_mib < 1
            or args.output_mib < 1 or args.rounds < 1):
        parser.error("--duration, --rounds, --clients, --upload-mib and --output-mib must be "
                     "positive")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.spawn_baseline:
        print(json.dumps(spawn_baseline(Path(args.spawn_baseline), args.duration, args.warmup,
                                        JOB_CONCURRENCY)))
        return 0
    began = time.monotonic()
    processes: list[Gateway] = []
    profiler = None
    memory: list[MemoryResult] = []
    skipped: list[str] = []
    rounds: list[tuple[gb.Result, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory(prefix="runnergw-pipeline-bench-") as temporary:
        directory = Path(temporary)
        files = Path(tempfile.mkdtemp(prefix="runnergw-pipeline-bench-",
                                      dir=args.files_dir)) if args.files_dir else directory
        try:
            setup = make_setup(directory, args.upload_mib, args.output_mib, files)
            setup.plain_http = args.plain_http
            setup.job_niceness = args.job_niceness
            tls: ssl.SSLContext | None = None
            if not args.plain_http:
                tls = ssl.create_default_context(cafile=str(setup.cert))
                tls.set_alpn_protocols(["http/1.1"])
            gateway = launch_gateway(setup, "jobs")
            processes.append(gateway)
            print(f"runnergw pipeline bench: python {platform.python_version()}, "
                  f"{os.cpu_count()} CPUs, gateway pid {gateway.pid} "
                  f"({'http' if args.plain_http else 'https'}://{HOST}:{gateway.port}/"
                  f"{CP_MODEL}/); {args.duration:g} s per "
                  f"case, warm-up {args.warmup:g} s", flush=True)
            print(f"  {check_one_reply(gateway, tls, setup.saas)}", flush=True)
            target = PipelineTarget(gateway.port, tls,
                                    [setup.saas.headers(f"bench-{i}")
                                     for i in range(args.clients)])
            # The two alternate, so that a slow drift of a shared machine's load weighs on
            # both alike; the goal is judged on the median round.
            for number in range(1, args.rounds + 1):
                baseline = run_baseline(files / "spawn", args.duration, args.warmup)
                meter = CpuMeter({"gateway": gateway.pid, "client": os.getpid()}, gateway.pid)
                if args.profile and number == 1:
                    profiler = gb.start_profiler(gateway.pid, args.profile, directory)
                through = asyncio.run(measure_throughput(target, args, meter))
                if profiler is not None:
                    gb.stop_profiler(profiler, directory)
                    profiler = None
                rounds.append((through, baseline))
                rate = baseline["count"] / baseline["seconds"]
                print(f"  round {number}: bare reactor {baseline['count']} spawns of cp, "
                      f"{rate:.1f}/s; gateway {through.count} requests, {through.rate:.1f} "
                      f"req/s = {through.rate / rate if rate else 0.0:.3f}"
                      + (f"; {len(through.errors)} errors: {through.errors[0]}"
                         if through.errors else ""), flush=True)
            through, baseline = median_round(rounds)
            gateway.check_alive()
            gb.stop_process(gateway.process)
            with open(directory / "audit-jobs.log", "rb") as stream:
                audit_lines = sum(1 for _ in stream)
            if args.memory:
                memory, skipped = run_memory_cases(setup, tls, args, processes)
        except Exception as e:  # noqa: BLE001 - report and clean up
            print(f"bench failed: {type(e).__name__}: {e}", file=sys.stderr)
            return 2
        finally:
            if profiler is not None:
                gb.stop_profiler(profiler, directory)
            for process in processes:
                gb.stop_process(process.process)
            if files != directory:
                shutil.rmtree(files, ignore_errors=True)
    if len(rounds) > 1:
        print(f"\nThe tables show the median of {len(rounds)} rounds (by ratio).")
    print_report(through, baseline, memory, args)
    print(f"\naudit trail: {audit_lines} lines written (>= {through.count} measured requests, "
          "warm-up included)")
    verdicts = goals(through, baseline, memory)
    print()
    print(f"INFO  gateway CPU per request: {gb._fmt(through.gateway_cpu_us, 0)} us in the "
          f"gateway process (bare reactor: {gb._fmt(baseline['own_cpu_us'], 0)} us per spawn)")
    print(f"INFO  job launcher per request: "
          f"{gb._fmt(launcher_cpu_us(through, args.duration), 0)} us")
    print(f"INFO  job processes per request: {gb._fmt(jobs_cpu_us(through, args.duration), 0)}"
          f" us of CPU for cp (bare cp: "
          f"{gb._fmt(baseline['children_cpu_us'], 0)} us)")
    for line in skipped:
        print(f"SKIP  {line}")
    for ok, line in verdicts:
        print(f"{'PASS' if ok else 'FAIL'}  {line}")
    errors = (sum(len(t.errors) + b["failed"] for t, b in rounds)
              + sum(len(m.errors) for m in memory))
    print(f"\n{sum(ok for ok, _ in verdicts)}/{len(verdicts)} goals met; {errors} errors; "
          f"{time.monotonic() - began:.0f} s in all")
    if errors:
        return 2
    return 1 if args.check and not all(ok for ok, _ in verdicts) else 0


if __name__ == "__main__":
    sys.exit(main())
