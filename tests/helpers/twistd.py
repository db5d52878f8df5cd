"""A real ``twistd`` process as the tests run it: its output kept, the URL of its listening
event, its end."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessExitedAlready, ProcessTerminated
from twisted.internet.interfaces import IProcessTransport
from twisted.internet.protocol import ProcessProtocol
from twisted.trial.unittest import TestCase

__all__ = ["GATEWAY_VARIABLES", "TWISTD", "Event", "TwistdProcess", "gateway_environment",
           "stop_at_cleanup",
           "spawn_twistd"]

TWISTD = "from twisted.scripts.twistd import run; run()"
"""``python -c TWISTD …`` runs twistd with the test's interpreter and ``sys.path``."""


Event = dict[str, Any]
"""One JSON log event of the gateway."""


class TwistdProcess(ProcessProtocol):
    """Collects output and every JSON log event (``events``); ``listening`` fires with the
    URL of the first listening event, ``metrics_listening`` with the first metrics listener's
    (the supervisor's with several workers), ``ready`` once the gateway said it is ready.

    ``next_event`` and ``when_logged`` wait for events; a wait still open when the process
    ends fails with its output.
    """

    def __init__(self) -> None:
        self.listening: Deferred[str] = Deferred()
        self.metrics_listening: Deferred[str] = Deferred()
        self.ready: Deferred[None] = Deferred()
        """Fires when the gateway says it is ready (its usage ledger open, if any)."""
        self.ended: Deferred[int] = Deferred()
        self.output = b""
        self.events: list[Event] = []
        self._pending = b""
        self._waiters: list[tuple[Callable[[Event], bool], Deferred[Event]]] = []

    def outReceived(self, data: bytes) -> None:
        self.output += data
        self._pending += data
        while b"\n" in self._pending:
            line, self._pending = self._pending.split(b"\n", 1)
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict):
                self._received(event)

    def _received(self, event: Event) -> None:
        self.events.append(event)
        name = event.get("event")
        if name == "listening" and not self.listening.called:
            self.listening.callback(event["url"])
        elif (name == "metrics_listening" and "worker" not in event
              and not self.metrics_listening.called):
            self.metrics_listening.callback(event["url"])
        elif name == "ready" and not self.ready.called:
            self.ready.callback(None)
        for waiter in list(self._waiters):
            if waiter[0](event):
                self._waiters.remove(waiter)
                waiter[1].callback(event)

    def next_event(self, *names: str, **fields: Any) -> Deferred[Event]:
        """The next event named one of ``names`` whose ``fields`` have the given values."""
        waiter: Deferred[Event] = Deferred()
        self._waiters.append((lambda event: _matches(event, names, fields), waiter))
        return waiter

    def when_logged(self, name: str, **fields: Any) -> Deferred[Event]:
        """The first event ``name`` with the given ``fields``, logged already or to come."""
        for event in self.events:
            if _matches(event, (name,), fields):
                return succeed(event)
        return self.next_event(name, **fields)

    def events_named(self, name: str) -> list[Event]:
        """Every event ``name`` logged so far."""
        return [event for event in self.events if event.get("event") == name]

    def errReceived(self, data: bytes) -> None:
        self.output += data

    def processEnded(self, reason: Any) -> None:
        code = reason.value.exitCode if reason.check(ProcessTerminated, ProcessDone) else -1
        if not self.listening.called:
            self.listening.errback(RuntimeError(f"twistd ended ({code}): {self.output!r}"))
        waiters, self._waiters = self._waiters, []
        for _, waiter in waiters:
            waiter.errback(RuntimeError(f"twistd ended ({code}): {self.output[-4000:]!r}"))
        self.ended.callback(code)


def _matches(event: Event, names: tuple[str, ...], fields: dict[str, Any]) -> bool:
    return event.get("event") in names and all(
        event.get(key) == value for key, value in fields.items())


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

    stop_at_cleanup(testcase, transport, process.ended, stop_signal)
    return transport


def stop_at_cleanup(testcase: TestCase, transport: IProcessTransport, ended: Deferred[Any],
                    stop_signal: str = "TERM") -> None:
    """At ``testcase``'s cleanup, send ``stop_signal`` to the process unless it has
    ``ended``, and wait for its end."""

    def stop() -> Deferred[Any]:
        if not ended.called:
            try:
                transport.signalProcess(stop_signal)
            except ProcessExitedAlready:
                pass
        return ended

    testcase.addCleanup(stop)
