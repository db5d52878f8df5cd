"""Retiring the routes a reload replaced, once the exchanges that began on them are over."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from twisted.internet.defer import Deferred, gatherResults, maybeDeferred
from twisted.logger import Logger

from runnergw.chain.route import Router
from runnergw.logs import level_gate

__all__ = ["retire_when_idle"]

log = Logger(namespace="runnergw.retirement", observer=level_gate)


def retire_when_idle(router: Router, also: Sequence[Callable[[], Any]] = ()) -> Deferred[None]:
    """Once no exchange is under way on ``router``, retire each of its terminals
    (``retire()``, else ``stop()``) and call each of ``also`` (what the old configuration
    alone held: an audit file the new one does not write). Fires when all of that is done;
    a failure is logged, never raised."""
    def retire(_: object) -> Deferred[Any]:
        steps = [_retire(route.terminal) for route in router.routes
                 if route.terminal is not None]
        steps.extend(maybeDeferred(free) for free in also)
        for step in steps:
            step.addErrback(lambda failure: log.failure(
                "Freeing a part of the previous configuration failed", failure,
                event="retire_failed"))
        return gatherResults(steps)

    def retired(_: object) -> None:
        log.info("The previous configuration is retired: its last exchange is over",
                 event="configuration_retired")

    return router.inflight.when_idle().addCallback(retire).addCallback(retired)


def _retire(terminal: Any) -> Deferred[Any]:
    retire = getattr(terminal, "retire", None)
    return maybeDeferred(retire if retire is not None else terminal.stop)
