"""A stop that drains: what SIGTERM starts.

1. At once readiness turns "not ready" (``/readyz``, ``STOPPING=1``), while the gateway goes
   on serving and accepting for ``shutdown.readinessDelay``: a load balancer stops sending
   new work first. The drain's clock has not started yet.
2. Then new connections are refused, connections waiting for a next request are closed and
   every answer finished from now on says ``Connection: close``; the exchanges under way get
   ``shutdown.grace`` to finish, and the service manager is asked (``EXTEND_TIMEOUT_USEC``)
   not to kill the process meanwhile.
3. What is left when the grace is over is ended cleanly (``ITerminal.stop``): a final error
   line on a streamed answer, a 503 for an answer not begun, jobs' process groups killed.
4. Then the normal stop (the audit trail and the ledger are flushed and closed) and the exit,
   whose status says whether the drain was clean (``runnergw.exit_status``).

A second stop signal during the drain goes to step 3 at once.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import CancelledError, Deferred, maybeDeferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from runnergw.chain.inflight import InFlight
from runnergw.config.shutdown import ShutdownSettings
from runnergw.health import Readiness
from runnergw.http.factory import GatewayHTTPFactory
from runnergw.logs import level_gate
from runnergw.systemd.notify import Notifier

__all__ = ["CLOSE_WAIT", "Drain", "EXTEND_MARGIN", "TICK"]

TICK = 1.0
"""Seconds between two status lines (and timeout extensions) while draining."""
EXTEND_MARGIN = 10.0
"""Seconds the service manager's stop timeout is extended beyond what the drain still needs."""
CLOSE_WAIT = 2.0
"""Longest wait, once the exchanges are over, for their connections to send their last bytes
and close, before the stop drops what is still open."""


class Drain:
    """The drain of one gateway; ``begin`` at each stop signal, ``clean`` once it is over."""

    log = Logger(observer=level_gate)

    def __init__(self, settings: ShutdownSettings, clock: Any, *, readiness: Readiness,
                 notifier: Notifier, factory: GatewayHTTPFactory, inflight: InFlight,
                 stop_listening: Callable[[], Deferred[None] | None],
                 end_under_way: Callable[[], Deferred[None] | None],
                 stop: Callable[[], None]) -> None:
        """``stop_listening`` refuses new connections, ``end_under_way`` ends what is left
        (stops the routes' terminals), ``stop`` starts the normal stop (the reactor's)."""
        self.settings = settings
        self.clock = clock
        self.readiness = readiness
        self.notifier = notifier
        self.factory = factory
        self.inflight = inflight
        self._stop_listening = stop_listening
        self._end_under_way = end_under_way
        self._stop = stop
        self.state = "serving"
        """``serving``, ``delaying`` (readiness off, still accepting), ``waiting`` (for the
        exchanges under way, within the grace), ``ending`` (what is left) or ``over``."""
        self.clean: bool | None = None
        """Once the drain is over: whether every exchange finished within the grace."""
        self.cut = 0
        """How many exchanges were still under way when the grace was over."""
        self.grace_ends: float | None = None
        """Clock reading when the grace is over (set once new connections are refused)."""
        self._timer: Any = None
        self._idle: Deferred[None] | None = None
        self._ticks: LoopingCall | None = None
        self._describe: Callable[[], str] = lambda: ""

    @property
    def running(self) -> bool:
        """True from the first stop signal until the normal stop starts."""
        return self.state in ("delaying", "waiting", "ending")

    def describe(self) -> str:
        """The status line's drain part: ``draining: N left, M s of grace left``."""
        left = self.inflight.count
        if self.state == "delaying":
            grace = self.settings.grace
        elif self.grace_ends is not None and self.state == "waiting":
            grace = max(0.0, self.grace_ends - self.clock.seconds())
        else:
            grace = 0.0
        return f"draining: {left} left, {grace:.0f} s of grace left"

    def begin(self, signal_name: str, describe: Callable[[], str]) -> None:
        """A stop signal: start the drain, or skip its remaining waits when it runs."""
        if self.state == "serving":
            self._describe = describe
            self._start(signal_name)
        elif self.state in ("delaying", "waiting"):
            self.log.warn("{signal} again while draining: ending the {count} exchanges under "
                          "way now", event="drain_shortcut", signal=signal_name,
                          count=self.inflight.count)
            self._end()

    def _start(self, signal_name: str) -> None:
        self.state = "delaying"
        self.readiness.draining = True
        delay = self.settings.readiness_delay
        self.notifier.stopping(self._describe())
        self._extend(delay + self.settings.grace)
        self.log.info("{signal}: draining; not ready, still serving for {delay:g} s, then "
                      "{grace:g} s of grace for the {count} exchanges under way",
                      event="drain_started", signal=signal_name, delay=delay,
                      grace=self.settings.grace, count=self.inflight.count)
        self._ticks = LoopingCall(self._tick)
        self._ticks.clock = self.clock
        self._ticks.start(TICK, now=False)
        self._timer = self.clock.callLater(delay, self._refuse_new)

    def _refuse_new(self) -> None:
        """Step 2: the readiness delay is over; the grace starts now."""
        self._timer = None
        self.state = "waiting"
        self._close_doors()
        grace = self.settings.grace
        self.grace_ends = self.clock.seconds() + grace
        self.log.info("Refusing new connections; {count} exchanges under way, {grace:g} s of "
                      "grace", event="drain_refusing", count=self.inflight.count, grace=grace)
        self._extend(grace)
        self._idle = self.inflight.when_idle()
        if self._idle.called:
            self._all_finished(None)
            return
        self._idle.addCallbacks(self._all_finished, lambda failure: failure.trap(CancelledError))
        self._timer = self.clock.callLater(grace, self._grace_over)

    def _close_doors(self) -> None:
        maybeDeferred(self._stop_listening).addErrback(
            lambda failure: self.log.failure("Cannot stop listening", failure=failure))
        self.factory.close_when_idle()

    def _all_finished(self, _: object) -> None:
        self._idle = None
        if self.state != "waiting":
            return
        self._cancel_timer()
        self.clean = True
        self.log.info("Drained: every exchange finished", event="drain_clean")
        self._after_exchanges()

    def _grace_over(self) -> None:
        self._timer = None
        self.log.warn("The grace is over: ending the {count} exchanges still under way",
                      event="drain_grace_over", count=self.inflight.count)
        self._end()

    def _end(self) -> None:
        """Step 3: end what is left, now."""
        if self.state == "delaying":
            self._close_doors()
        self._cancel_timer()
        if self._idle is not None:
            idle, self._idle = self._idle, None
            idle.cancel()
        self.state = "ending"
        self.cut = self.inflight.count
        self.clean = self.cut == 0
        ended = maybeDeferred(self._end_under_way)
        ended.addErrback(lambda failure: self.log.failure("Ending the exchanges failed",
                                                          failure=failure))
        ended.addCallback(lambda _: self._after_exchanges())

    def _after_exchanges(self) -> None:
        """The exchanges are over: their connections close (a short wait for their last
        bytes), then the normal stop."""
        self.state = "ending"
        self.notifier.status(self._describe())
        closed = self.factory.connections.when_empty()
        waiting = self.clock.callLater(CLOSE_WAIT, closed.cancel)

        def over(_: object) -> None:
            if waiting.active():
                waiting.cancel()
            self._over()

        closed.addBoth(over)

    def _over(self) -> None:
        if self.state == "over":
            return
        self.state = "over"
        if self._ticks is not None and self._ticks.running:
            self._ticks.stop()
        self.log.info("Drain over ({outcome}); stopping", event="drain_over",
                      outcome="clean" if self.clean else f"{self.cut} exchanges cut")
        self._stop()

    def _tick(self) -> None:
        self.notifier.status(self._describe())
        if self.state == "delaying" and self._timer is not None:
            self._extend(self._timer.getTime() - self.clock.seconds() + self.settings.grace)
        elif self.state == "waiting" and self.grace_ends is not None:
            self._extend(self.grace_ends - self.clock.seconds())
        else:
            self._extend(CLOSE_WAIT)

    def _extend(self, seconds: float) -> None:
        """Ask the service manager not to kill the process for ``seconds`` more (and a
        margin for the normal stop)."""
        self.notifier.send(f"EXTEND_TIMEOUT_USEC={int((seconds + EXTEND_MARGIN) * 1e6)}")

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
