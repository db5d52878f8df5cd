"""Retiring the routes a reload replaced, once their exchanges are over."""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from runnergw.chain.route import Route, Router
from runnergw.retirement import retire_when_idle

__all__ = ["RetireWhenIdleTests"]


class _Stopped:
    """A terminal with ``stop`` only."""

    def __init__(self, calls: list[str], name: str) -> None:
        self.calls = calls
        self.name = name

    def stop(self) -> Deferred[None]:
        self.calls.append(f"{self.name}.stop")
        return succeed(None)


class _Retired(_Stopped):
    """A terminal that shares parts: it is retired, never stopped, by a reload."""

    def retire(self) -> None:
        self.calls.append(f"{self.name}.retire")


def _router(*terminals: Any) -> Router:
    routes = [Route(name=str(i), prefix=(str(i),), filters=(), terminal=terminal)
              for i, terminal in enumerate(terminals)]
    return Router(routes, Route(name="", prefix=(), filters=(), terminal=None))


class RetireWhenIdleTests(SynchronousTestCase):
    """``retire_when_idle``."""

    def test_waits_for_the_last_exchange(self) -> None:
        """Nothing is freed while an exchange that began on the router is under way."""
        calls: list[str] = []
        router = _router(_Stopped(calls, "a"))
        router.inflight.enter()
        retired = retire_when_idle(router, [lambda: calls.append("audit.close")])
        self.assertEqual(calls, [])
        self.assertNoResult(retired)
        router.inflight.leave()
        self.successResultOf(retired)
        self.assertEqual(calls, ["a.stop", "audit.close"])

    def test_retire_preferred_to_stop(self) -> None:
        """A terminal that can be retired is, and is not stopped."""
        calls: list[str] = []
        self.successResultOf(retire_when_idle(_router(_Retired(calls, "jobs"),
                                                      _Stopped(calls, "pool"))))
        self.assertEqual(sorted(calls), ["jobs.retire", "pool.stop"])

    def test_failure_logged(self) -> None:
        """A part that fails to stop is logged; the others are freed all the same."""
        events: list[dict[str, Any]] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        calls: list[str] = []
        broken = _Stopped(calls, "broken")
        broken.stop = lambda: fail(OSError("no"))  # type: ignore[method-assign]
        self.successResultOf(retire_when_idle(_router(broken, _Stopped(calls, "b"))))
        self.assertEqual(calls, ["b.stop"])
        self.assertEqual(len([e for e in events if e.get("event") == "retire_failed"]), 1)
        self.flushLoggedErrors(OSError)
