"""One Ollama server of a runner: its persistent connections, its requests under way, its
health (checked periodically, ejected after failures, probed until it answers again) and the
models it has loaded."""

from __future__ import annotations

import json
from typing import Any

import attrs
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from runnergw.config.runner_pool import PoolSettings
from runnergw.logs import level_gate
from runnergw.ollama.model_names import normalize_model_name
from runnergw.upstream.connection import UpstreamConnection
from runnergw.upstream.fetch import fetch

__all__ = ["HostKey", "UpstreamHost", "model_key"]

PS_LIMIT = 1 << 20
"""Largest ``/api/ps`` answer read."""
VERSION_LIMIT = 64 << 10
"""Largest ``/api/version`` answer read."""


@attrs.frozen
class HostKey:
    """What makes a host: where it is and the settings its connections and health follow.
    Two runners naming the same key share one host (connections, health, requests under way);
    a reload keeps a host whose key stays."""

    scheme: str
    host: str
    port: int
    ca_path: str = ""
    connect_timeout: float = 10.0
    max_connections: int = 64
    pool: PoolSettings = attrs.field(factory=PoolSettings)

    @property
    def netloc(self) -> str:
        """``host:port`` as configured (IPv6 in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def model_key(name: str) -> str:
    """A model name in the form requests and ``/api/ps`` are compared in."""
    try:
        return normalize_model_name(name)
    except ValueError:
        return name.lower()


class UpstreamHost:
    """A host of a runner pool; ``pool`` is its ``UpstreamPool`` of persistent connections.

    ``acquire`` and ``release`` wrap the pool's, counting the requests under way and
    learning from each exchange: ``eject_after`` consecutive refused connects or resets
    eject the host for ``eject_for`` (doubling with each ejection in a row, up to
    ``max_eject_for``); once that time is over it is probed with ``GET /api/version`` every
    ``probe_interval`` and readmitted at its first 200. A successful exchange resets both
    counts.

    Once started (``start_checks``) a healthy host is also checked every interval, so that
    an idle gateway learns of a host that went down: with affinity, ``GET /api/ps`` every
    ``ps_interval`` (which also reads its loaded models), else ``GET /api/version`` every
    ``probe_interval``. A failed check (refused, reset, timed out, or not a 2xx answer)
    counts towards the ejection as a failed exchange does; a passed one resets the counts.
    """

    log = Logger(observer=level_gate)

    def __init__(self, key: HostKey, pool: Any, clock: IReactorTime, label: str) -> None:
        self.key = key
        self.pool = pool
        self.clock = clock
        self.label = label
        """The runner as log lines name it."""
        self.options = key.pool
        self.active = 0
        """Requests under way on this host."""
        self.ejections = 0
        """Times the host was ejected since the start."""
        self.ejected_until: float | None = None
        """While ejected: the earliest time a probe may readmit it; None when healthy."""
        self.ejected_at = 0.0
        self.loaded_models: tuple[str, ...] = ()
        """The models ``/api/ps`` last listed (empty when unknown)."""
        self._loaded_keys: frozenset[str] = frozenset()
        self._failures = 0
        self._in_a_row = 0
        self._probe_call: IDelayedCall | None = None
        self._check_loop: LoopingCall | None = None
        self._checking = False
        self._asking: set[Deferred[Any]] = set()
        """The probe or check under way (cancelled by ``close``)."""
        self._closed = False

    @property
    def address(self) -> str:
        """``host:port`` as configured."""
        return self.key.netloc

    @property
    def healthy(self) -> bool:
        """False while ejected."""
        return self.ejected_until is None

    def has_model(self, name: str) -> bool:
        """True when ``/api/ps`` last listed the model ``name`` as loaded."""
        return model_key(name) in self._loaded_keys

    # Requests

    def acquire(self) -> Deferred[UpstreamConnection]:
        """A connection for one exchange (counted under way until ``release``)."""
        self.active += 1
        connecting: Deferred[UpstreamConnection] = self.pool.acquire()
        connecting.addErrback(self._not_connected)
        return connecting

    def _not_connected(self, failure: Failure) -> Failure:
        self.active -= 1
        if not failure.check(CancelledError):
            self.failed(f"connect failed: {failure.getErrorMessage()}")
        return failure

    def release(self, connection: UpstreamConnection) -> None:
        """Take back the connection of a finished exchange and learn from how it went."""
        self.active -= 1
        if connection.dropped:
            self.failed("the connection was reset during an exchange")
        elif connection.answered:
            self.succeeded()
        self.pool.release(connection)

    def succeeded(self) -> None:
        """An exchange completed: the failure counts start again."""
        self._failures = 0
        self._in_a_row = 0

    def failed(self, reason: str) -> None:
        """A connection was refused or reset; eject the host after ``eject_after`` in a row."""
        if self._closed:
            return
        self._failures += 1
        if self.ejected_until is None and self._failures >= self.options.eject_after:
            self._eject(reason)

    # Health

    def _eject(self, reason: str) -> None:
        options = self.options
        length = min(options.eject_for * 2 ** min(self._in_a_row, 32), options.max_eject_for)
        self._in_a_row += 1
        self.ejections += 1
        self.ejected_at = now = self.clock.seconds()
        self.ejected_until = now + length
        self._set_loaded(())
        self.log.warn("runner {runner}: host {host} ejected for {seconds:g}s after {failures} "
                      "failures in a row ({reason})", event="upstream_host_ejected",
                      runner=self.label, host=self.address, seconds=length,
                      failures=self._failures, reason=reason)
        self._probe_call = self.clock.callLater(length, self._probe)

    def _probe(self) -> None:
        self._probe_call = None
        self._ask("/api/version", self.options.probe_interval, VERSION_LIMIT).addBoth(
            self._probed)

    def _probed(self, result: Any) -> None:
        if self._closed or self.ejected_until is None:
            return
        if isinstance(result, tuple) and result[0] == 200:
            self._readmit()
        else:
            self._probe_call = self.clock.callLater(self.options.probe_interval, self._probe)

    def _readmit(self) -> None:
        self.ejected_until = None
        self._failures = 0
        self.log.info("runner {runner}: host {host} answers again, readmitted after "
                      "{seconds:.3f}s", event="upstream_host_readmitted", runner=self.label,
                      host=self.address, seconds=self.clock.seconds() - self.ejected_at)
        if self._check_loop is not None:
            self._check()

    # Checks, and the loaded models

    @property
    def check_interval(self) -> float:
        """How often a healthy host is checked: ``ps_interval`` with affinity (its loaded
        models are read at the same time), else ``probe_interval``."""
        return self.options.ps_interval if self.options.affinity else self.options.probe_interval

    def start_checks(self, at_once: bool = False) -> None:
        """Check the host every ``check_interval`` while it is healthy (until ``close``),
        the first time at once or an interval from now; an ejected one is probed instead."""
        if self._closed or self._check_loop is not None:
            return
        self._check_loop = LoopingCall(self._check)
        self._check_loop.clock = self.clock
        self._check_loop.start(self.check_interval, now=at_once)

    def _check(self) -> None:
        if self._checking or not self.healthy or self._closed:
            return
        self._checking = True
        path, limit = (("/api/ps", PS_LIMIT) if self.options.affinity
                       else ("/api/version", VERSION_LIMIT))
        self._ask(path, self.check_interval, limit).addBoth(self._checked, path)

    def _ask(self, path: str, timeout: float, limit: int) -> Deferred[Any]:
        asking = fetch(self.pool, self.clock, self.address, path, timeout=timeout, limit=limit)
        if not asking.called:
            self._asking.add(asking)
            asking.addBoth(self._answered, asking)
        return asking

    def _answered(self, result: Any, asking: Deferred[Any]) -> Any:
        self._asking.discard(asking)
        return result

    def _checked(self, result: Any, path: str) -> None:
        self._checking = False
        if self._closed or not self.healthy:
            return
        if isinstance(result, Failure):
            self._set_loaded(())
            self.failed(f"GET {path} failed: {result.getErrorMessage()}")
        elif not 200 <= result[0] < 300:
            self._set_loaded(())
            self.failed(f"GET {path} answered {result[0]}")
        else:
            self.succeeded()
            if self.options.affinity:
                self._set_loaded(_loaded_names(result[1]))

    def _set_loaded(self, names: tuple[str, ...]) -> None:
        self.loaded_models = names
        self._loaded_keys = frozenset(model_key(name) for name in names)

    # Life

    def close(self) -> Deferred[Any]:
        """Stop probing and checking (a probe or check under way is cancelled) and close
        every connection."""
        self._closed = True
        if self._probe_call is not None and self._probe_call.active():
            self._probe_call.cancel()
        self._probe_call = None
        if self._check_loop is not None and self._check_loop.running:
            self._check_loop.stop()
        for asking in list(self._asking):
            asking.cancel()
        return self.pool.close()


def _loaded_names(body: bytes) -> tuple[str, ...]:
    """The models an ``/api/ps`` answer lists (none when it is not the expected JSON)."""
    try:
        models = json.loads(body).get("models") or []
        names = [entry.get("name") or entry.get("model") for entry in models]
    except (ValueError, AttributeError, TypeError):
        return ()
    return tuple(name for name in names if isinstance(name, str) and name)
