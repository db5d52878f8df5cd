"""What every job of the gateway shares: the reactor, the job launcher, the jobs directory,
ffprobe, the environment jobs get and each endpoint's job slots. One ``JobParts`` serves
every command route and its ``mediaLimits`` filter."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from twisted.internet.defer import Deferred

from runnergw.jobs.endpoint_slots import EndpointSlots
from runnergw.jobs.launcher import JobLauncher

__all__ = ["JobParts"]


class JobParts:
    """The job launcher and what jobs are started with, shared by every command route."""

    def __init__(self, reactor: Any, jobs_path: str, ffprobe: str | None,
                 extra_environment: Mapping[str, str] | None = None,
                 job_niceness: int = 0) -> None:
        """``ffprobe`` is its path, None when it is not installed; jobs run ``job_niceness``
        (0-19) nicer than the gateway, with ``extra_environment`` added to a clean one."""
        self.reactor = reactor
        # Jobs run in their own directory, so the paths given to a command must not depend
        # on the gateway's working directory: a relative ``jobsPath`` is made absolute here.
        self.jobs_path = os.path.abspath(jobs_path)
        self.ffprobe = ffprobe
        self.extra_environment = dict(extra_environment or {})
        self.launcher = JobLauncher(reactor, job_niceness)
        self.slots = EndpointSlots()
        """Each endpoint's job slots, shared by the routes that serve it before and after a
        reload."""
        self._stopped: Deferred[None] | None = None
        self._stop_waiters: list[Deferred[None]] = []

    def stop(self) -> Deferred[None]:
        """Stop the job launcher, once whichever command route asks first; each caller's
        Deferred fires when it has exited."""
        waiter: Deferred[None] = Deferred()
        self._stop_waiters.append(waiter)
        if self._stopped is None:
            self._stopped = self.launcher.stop()
            self._stopped.addBoth(self._launcher_stopped)
        elif self._stopped.called:
            self._launcher_stopped(None)
        return waiter

    def _launcher_stopped(self, result: object) -> None:
        waiters, self._stop_waiters = self._stop_waiters, []
        for waiter in waiters:
            waiter.callback(None)

    def update(self, ffprobe: str | None, extra_environment: Mapping[str, str]) -> None:
        """Take a reload's ffprobe and ``pipelines.environment`` for the jobs that start from
        now on (the launcher, its niceness and the jobs directory stay)."""
        self.ffprobe = ffprobe
        self.extra_environment = dict(extra_environment)

    def environment(self, directory: str) -> dict[str, str]:
        """A small clean environment, plus what the operator set (``pipelines.environment``):
        nothing of the gateway's own (its keys) reaches a job."""
        environment = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": directory,
                       "TMPDIR": directory, "LANG": "C.UTF-8"}
        environment.update(self.extra_environment)
        return environment
