"""What each worker made of a reload, told to the supervisor: the worker's ``READY=1`` that
ends a reload carries ``RELOAD=ok`` or ``RELOAD=refused``, and the supervisor gathers the
answers of one SIGHUP into one report."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from twisted.logger import Logger

from runnergw.systemd.notify import Notifier

__all__ = ["RELOAD_FIELD", "ReloadRound", "ReportingNotifier"]

RELOAD_FIELD = "RELOAD"
"""The notify field of a worker's reload outcome: ``ok`` or ``refused``."""


class ReportingNotifier(Notifier):
    """A worker's notifier: the ``READY=1`` that ends a reload says whether the reload
    counted in ``reload_results`` (the service's ``{"ok": n, "failed": n}``) succeeded."""

    def __init__(self, address: str | None, clock: Any) -> None:
        super().__init__(address, clock)
        self.reload_results: Mapping[str, int] = {}
        self._before: int | None = None

    def reloading(self) -> None:
        self._before = self.reload_results.get("ok", 0)
        super().reloading()

    def ready(self, status: str) -> None:
        if self._before is None:
            super().ready(status)
            return
        outcome = "ok" if self.reload_results.get("ok", 0) > self._before else "refused"
        self._before = None
        self._last_status = status
        self.send("READY=1", "STATUS=" + " ".join(status.splitlines()),
                  f"{RELOAD_FIELD}={outcome}")


_SAID = {"ok": "reloaded", "refused": "refused the reload", "ended": "ended before it answered"}


class ReloadRound:
    """One SIGHUP passed to the workers serving: who answered what."""

    def __init__(self, workers: Iterable[int]) -> None:
        self.waiting = set(workers)
        self.outcomes: dict[int, str] = {}

    def answered(self, index: int, outcome: str | None) -> None:
        """Worker ``index`` served again after the SIGHUP: ``ok``, ``refused``, or None
        (it ended, or a new worker served, before it answered)."""
        if index not in self.waiting:
            return
        self.waiting.discard(index)
        self.outcomes[index] = outcome if outcome in ("ok", "refused") else "ended"

    @property
    def over(self) -> bool:
        return not self.waiting

    @property
    def every_worker_reloaded(self) -> bool:
        return all(outcome == "ok" for outcome in self.outcomes.values())

    def refused(self) -> list[int]:
        """The workers that refused, serving their previous settings."""
        return sorted(i for i, outcome in self.outcomes.items() if outcome == "refused")

    def log_outcome(self, log: Logger) -> None:
        """Say what every worker did, as one event."""
        if self.every_worker_reloaded:
            log.info("Every worker reloaded ({workers})", event="workers_reloaded",
                     workers=self.describe())
            return
        log.error("Reload not taken by every worker: {workers}; a worker that refused "
                  "serves its previous settings (its reload_problem events say why)",
                  event="workers_reload_refused", workers=self.describe(),
                  refused=self.refused())

    def describe(self) -> str:
        """``worker 0 reloaded, worker 1 refused the reload``."""
        return ", ".join(f"worker {index} {_SAID[outcome]}"
                         for index, outcome in sorted(self.outcomes.items()))
