"""``twistd runnergw`` as an operator runs it: a real process, real TLS, SIGHUP, bad settings."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from pathlib import Path
from typing import Any

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, inlineCallbacks
from twisted.internet.endpoints import SSL4ClientEndpoint, connectProtocol
from twisted.internet.protocol import Protocol
from twisted.internet.ssl import Certificate, optionsForClientTLS
from twisted.trial.unittest import TestCase

from runnergw.exit_status import FAILED_AT_START
from runnergw.tokens.key_generation import write_signing_keypair
from tests.helpers.certs import make_ca
from tests.helpers.twistd import TWISTD, TwistdProcess, stop_at_cleanup


class _PeerCertificate(Protocol):
    """Completes a TLS handshake and reports the server certificate's serial number."""

    def __init__(self) -> None:
        self.serial: Deferred[int] = Deferred()

    def connectionMade(self) -> None:
        self.transport.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")

    def dataReceived(self, data: bytes) -> None:
        if not self.serial.called:
            peer = Certificate.peerFromTransport(self.transport)
            self.serial.callback(peer.serialNumber())
            self.transport.loseConnection()


class TwistdTests(TestCase):
    """The plugin, started by twistd in its own process."""

    timeout = 60

    def setUp(self) -> None:
        self.directory = Path(self.mktemp()).resolve()
        self.directory.mkdir(parents=True)

    def start(self, *options: str) -> TwistdProcess:
        process = TwistdProcess()
        argv = [sys.executable, "-c", TWISTD, "--logger", "runnergw.logs.json_observer",
                "-n", "--pidfile=", "runnergw", *options]
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith(("PASETO_", "SERVER_", "RUNNERGW_", "GO_ENV"))}
        transport = reactor.spawnProcess(process, sys.executable, argv, env=environment,
                                         path=str(self.directory))

        stop_at_cleanup(self, transport, process.ended)
        return process

    @inlineCallbacks
    def serial_at(self, url: str, ca_path: Path) -> Any:
        port = int(url.rsplit(":", 1)[1])
        root = Certificate.loadPEM(ca_path.read_bytes())
        endpoint = SSL4ClientEndpoint(reactor, "127.0.0.1", port,
                                      optionsForClientTLS("127.0.0.1", trustRoot=root))
        client = _PeerCertificate()
        yield connectProtocol(endpoint, client)
        serial = yield client.serial
        return serial

    @inlineCallbacks
    def test_sighup_reloads_the_certificate(self) -> None:
        """After acme.sh renews the certificate, SIGHUP makes new connections get the new one."""
        ca = make_ca(str(self.directory / "ca"))
        first = ca.issue(str(self.directory / "tls"), "gateway")
        write_signing_keypair(self.directory / "paseto.key", self.directory / "paseto.pub")
        config = self.directory / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "paseto": {"publicPath": str(self.directory / "paseto.pub")},
            "runners": [{"host": "127.0.0.1:9", "path": "/"}],
            "server": {"address": "127.0.0.1:0", "certificatePath": str(first.fullchain_path),
                       "keyPath": str(first.key_path)},
            "audit": {"path": str(self.directory / "audit.log")},
            "metrics": {"address": "127.0.0.1:0"},
        }))
        process = self.start("--config", str(config))
        url = yield process.listening
        self.assertTrue(url.startswith("https://127.0.0.1:"))
        before = yield self.serial_at(url, Path(first.ca_path))
        self.assertEqual(before, first.serial)
        second = ca.issue(str(self.directory / "renewed"), "gateway")
        Path(first.fullchain_path).write_bytes(Path(second.fullchain_path).read_bytes())
        Path(first.key_path).write_bytes(Path(second.key_path).read_bytes())
        os.kill(process.transport.pid, signal.SIGHUP)
        after = before
        for _ in range(50):  # the reload happens on the next reactor turn of the child
            after = yield self.serial_at(url, Path(first.ca_path))
            if after != before:
                break
        self.assertEqual(after, second.serial)

    @inlineCallbacks
    def test_bad_settings_exit_non_zero_before_listening(self) -> None:
        """A typo in the settings stops twistd with the file, line and path, before listening."""
        config = self.directory / "settings.yaml"
        config.write_text("runners:\n  - host: 127.0.0.1:11434\n    pth: /\n")
        process = self.start("--config", str(config))
        code = yield process.ended
        self.assertNotEqual(code, 0)
        self.assertIn(b"settings.yaml:3: runners[0].pth: unknown setting", process.output)
        self.assertFailure(process.listening, RuntimeError)
        yield process.listening.addErrback(lambda _: None)

    @inlineCallbacks
    def test_default_settings_start_on_loopback(self) -> None:
        """With no --config on a fresh checkout, dev keys are made and loopback is served."""
        project = Path(__file__).resolve().parents[1]
        (self.directory / "settings").mkdir()
        shipped = yaml.safe_load((project / "settings" / "settings.yaml").read_text())
        shipped["server"]["address"] = "127.0.0.1:0"
        shipped["metrics"] = {"address": "127.0.0.1:0"}
        # A jobs directory of its own: the default one belongs to any gateway of this user
        # running on the machine (the README's, another test run's).
        shipped["pipelines"]["jobsPath"] = str(self.directory / "jobs")
        (self.directory / "settings" / "settings.yaml").write_text(yaml.safe_dump(shipped))
        shutil.copytree(project / "models-enabled", self.directory / "models-enabled")
        process = self.start()
        url = yield process.listening
        self.assertTrue(url.startswith("http://127.0.0.1:"))
        self.assertTrue((self.directory / "settings" / "paseto.key").exists())
        self.assertTrue((self.directory / "keys" / "saas_public.pem").exists())
        self.assertTrue((self.directory / "keys" / "node_private.pem").exists())
        self.assertIn(b"runnergw token public", process.output)


    @inlineCallbacks
    def test_ledger_that_cannot_open_stops_with_a_config_status(self) -> None:
        """A usage ledger that is no ledger (found when it is opened, after listening) stops
        the gateway with status 78, which systemd shows as ``78/CONFIG``, and the log
        names the file."""
        write_signing_keypair(self.directory / "paseto.key", self.directory / "paseto.pub")
        ledger = self.directory / "usage.sqlite"
        ledger.write_bytes(b"not a database " * 100)
        config = self.directory / "settings.yaml"
        config.write_text(yaml.safe_dump({
            "paseto": {"publicPath": str(self.directory / "paseto.pub")},
            "runners": [{"host": "127.0.0.1:9", "path": "/"}],
            "server": {"address": "127.0.0.1:0"},
            "metrics": {"address": "127.0.0.1:0"},
            "roles": {"user": {"models": ["llama3"]}},
            "policy": {"defaultRole": "user", "ledgerPath": str(ledger)},
        }))
        process = self.start("--config", str(config))
        code = yield process.ended
        self.assertEqual(code, FAILED_AT_START, process.output)
        self.assertIn(b'"event": "ledger_failed"', process.output)
        self.assertIn(str(ledger).encode(), process.output)
