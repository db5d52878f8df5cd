"""A real ``twistd`` process as the tests run it: its output kept, the URL of its listening
event, its end."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

__all__ = ["GATEWAY_VARIABLES", "TWISTD", "TwistdProcess", "gateway_environment", "spawn_twistd"]

TWISTD = "from twisted.scripts.twistd import run; run()"
"""``python -c TWISTD …`` runs twistd with the test's interpreter and ``sys.path``."""


class TwistdProcess(ProcessProtocol):
    """Collects output; ``listening`` fires with the URL from the JSON log's listening event,
    ``metrics_listening`` (before it) with the metrics listener's, ``ready`` once the gateway
    said it is ready."""

    def __init__(self) -> None:
        self.listening: Deferred[str] = Deferred()
        self.metrics_listening: Deferred[str] = Deferred()
        self.ready: Deferred[None] = Deferred()
        """Fires when the gateway says it is ready (its usage ledger open, if any)."""
        self.ended: Deferred[int] = Deferred()
        self.output = b""
        self._pending = b""

    def outReceived(self, data: bytes) -> None:
        self.output += data
        self._pending += data
        while b"\n" in self._pending and not self.ready.called:
            line, self._pending = self._pending.split(b"\n", 1)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "listening":
                self.listening.callback(event["url"])
            elif event.get("event") == "metrics_listening":
                self.metrics_listening.callback(event["url"])
            elif event.get("event") == "ready":
                self.ready.callback(None)

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if reason.check(ProcessTerminated, ProcessDone) else -1
        if not self.listening.called:
            self.listening.errback(RuntimeError(f"twistd ended ({code}): {self.output!r}"))
        self.ended.callback(code)


GATEWAY_VARIABLES = ("PASETO_", "SERVER_", "RUNNERGW_", "GO_ENV", "NOTIFY_", "WATCHDOG_",
                     "LISTEN_", "AUDIT_")
"""Prefixes of the environment variables a gateway reads (settings overrides, the service
manager's): a test's gateway gets none of the test run's own."""


def gateway_environment(**extra: str) -> dict[str, str]:
    """The test run's environment without the variables a gateway reads, plus ``extra``."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(GATEWAY_VARIABLES)}
    environment.update(extra)
    return environment


def spawn_twistd(testcase: TestCase, process: TwistdProcess, config: str | Path, *,
                 directory: str | Path, environment: dict[str, str] | None = None,
                 stop_signal: str = "TERM") -> IProcessTransport:
    """Start ``twistd -n runnergw --config config`` in ``directory`` (JSON log, no pid
    file), with ``environment`` (default: ``gateway_environment()``); at cleanup it gets
    ``stop_signal`` unless it has ended, and the cleanup waits for its end."""
    argv = [sys.executable, "-c", TWISTD, "--logger", "runnergw.logs.json_observer",
            "-n", "--pidfile=", "runnergw", "--config", str(config)]
    transport = reactor.spawnProcess(
        process, sys.executable, argv,
        env=gateway_environment() if environment is None else environment,
        path=str(directory))

    def stop() -> Deferred[int]:
        if not process.ended.called:
            try:
                transport.signalProcess(stop_signal)
            except ProcessExitedAlready:
                pass
        return process.ended

    testcase.addCleanup(stop)
    return transport
