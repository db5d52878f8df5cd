"""Start a real runnergw (TLS on 127.0.0.1, port 0) in front of a fake Ollama, in-process;
stop it when the test needs it gone (its usage ledger written), or leave that to cleanup."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import attrs
import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, maybeDeferred, succeed
from twisted.trial.unittest import TestCase
from twisted.web.server import Site

from runnergw.config.load import load_settings
from runnergw.config.settings import Settings
from runnergw.service import GatewayService
from runnergw.startup import prepare
from runnergw.tokens.key_generation import write_signing_keypair
from runnergw.tokens.minting import mint_token
from runnergw.tokens.signing_keys import load_signing_key
from tests.helpers.certs import make_ca
from tests.helpers.fake_ollama import FakeOllama

__all__ = ["RunningGateway", "start_fake_ollama", "start_gateway"]


def start_fake_ollama(testcase: TestCase) -> tuple[FakeOllama, int]:
    """Serve a ``FakeOllama`` on 127.0.0.1; returns it and its port."""
    fake = FakeOllama(reactor)
    site = Site(fake)
    site.noisy = False
    port = reactor.listenTCP(0, site, interface="127.0.0.1")
    testcase.addCleanup(port.stopListening)
    return fake, port.getHost().port


@attrs.define
class RunningGateway:
    """A started gateway and what a client needs to call it."""

    service: GatewayService
    settings: Settings
    port: int
    scheme: str
    ca_path: str | None
    audit_path: Path
    key_path: Path
    ledger_path: Path | None = None
    """The usage ledger, with a ``roles`` section."""

    @property
    def url(self) -> str:
        """Base URL, as ``https://127.0.0.1:PORT``."""
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def token(self, subject: str | None = "tester", role: str | None = None,
              lifetime: float = 3600.0, **claims: Any) -> str:
        """A fresh v4.public token signed with the gateway's key; ``subject`` and ``role``
        None leave the claim out (as runner-gateway's tokens do), ``claims`` are more of
        them (``roles=["admin"]``)."""
        key = load_signing_key(self.key_path.read_bytes(), 4)
        return mint_token(key, subject=subject, role=role, lifetime=lifetime, now=time.time(),
                          extra=claims)

    def stop(self) -> Deferred[None]:
        """Stop the gateway now, as at shutdown (the usage ledger written and closed); cleanup
        then has nothing left to stop."""
        return _stop(self.service)

    def audit_records(self) -> list[dict[str, Any]]:
        """Every audit line written so far."""
        if not self.audit_path.exists():
            return []
        return [json.loads(line) for line in self.audit_path.read_text().splitlines() if line]


def _stop(service: GatewayService) -> Deferred[None]:
    """Stop a running gateway once its usage ledger is open: a gateway stopped while the
    ledger still opens takes the late open for a failure and stops the reactor."""
    if not service.running:
        return succeed(None)
    waiting = service.limits.ready() if service.limits is not None else None
    if waiting is None:
        return maybeDeferred(service.stopService)
    return waiting.addCallback(lambda _: service.stopService() if service.running else None)


def start_gateway(
    testcase: TestCase,
    runners: list[dict[str, Any]],
    *,
    tls: bool = True,
    server: dict[str, Any] | None = None,
    paseto: dict[str, Any] | None = None,
    pipelines: dict[str, Any] | None = None,
    roles: dict[str, Any] | None = None,
    policy: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> RunningGateway:
    """Write settings and keys into a temporary directory and start the gateway on port 0.

    With ``roles``, the usage ledger is ``usage.sqlite`` in that directory unless ``policy``
    names another ``ledgerPath``. The metrics listen on a port of their own (``metrics``
    replaces that section).
    """
    directory = Path(testcase.mktemp())
    directory.mkdir(parents=True)
    key_path, pub_path = directory / "paseto.key", directory / "paseto.pub"
    write_signing_keypair(key_path, pub_path)
    server_section: dict[str, Any] = {"address": "127.0.0.1:0"}
    ca_path = None
    if tls:
        issued = make_ca(str(directory / "ca")).issue(str(directory / "cert"), "gateway")
        server_section.update(certificatePath=str(issued.fullchain_path),
                              keyPath=str(issued.key_path))
        ca_path = str(issued.ca_path)
    server_section.update(server or {})
    paseto_section = {"version": "v4", "keyPath": str(key_path), "publicPath": str(pub_path)}
    paseto_section.update(paseto or {})
    audit_path = directory / "audit.log"
    document = {
        "logging": {"level": "info"},
        "paseto": paseto_section,
        "runners": runners,
        "server": server_section,
        "audit": {"path": str(audit_path)},
        "metrics": metrics if metrics is not None else {"address": "127.0.0.1:0"},
    }
    if pipelines is not None:
        document["pipelines"] = pipelines
    ledger_path = None
    if roles is not None:
        document["roles"] = roles
        policy_section = {"ledgerPath": str(directory / "usage.sqlite")}
        policy_section.update(policy or {})
        document["policy"] = policy_section
        ledger_path = Path(policy_section["ledgerPath"])
    elif policy is not None:
        document["policy"] = policy
    settings_path = directory / "settings.yaml"
    settings_path.write_text(yaml.safe_dump(document))
    settings = load_settings(str(settings_path), {})
    service = GatewayService(settings, prepare(settings), reactor)
    service.startService()
    testcase.addCleanup(_stop, service)
    assert service.port is not None
    return RunningGateway(
        service=service,
        settings=settings,
        port=service.port.getHost().port,
        scheme="https" if tls else "http",
        ca_path=ca_path,
        audit_path=audit_path,
        key_path=key_path,
        ledger_path=ledger_path,
    )
