"""Pipeline jobs in the metrics: how long each ran and how it ended, by route.

The command terminal notes each job it ran on its exchange (:func:`note_job`); the metrics
read the note once the exchange is over.
"""

from __future__ import annotations

from typing import Any

import attrs
from prometheus_client import CollectorRegistry, Counter, Histogram

from runnergw.chain.exchange import Exchange

__all__ = ["JOB_BUCKETS", "JOB_OUTCOMES", "JobMetrics", "JobRun", "note_job"]

JOB_OUTCOMES = ("ok", "failed", "timeout", "killed", "lost")
"""``killed``: its client left; ``lost``: the job launcher went away."""

JOB_BUCKETS = (0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0)

_KEY = "metrics.job"


@attrs.frozen
class JobRun:
    """One job as the metrics see it."""

    seconds: float
    """From its start to its result."""
    outcome: str
    """One of :data:`JOB_OUTCOMES`."""


def note_job(exchange: Exchange, seconds: float, outcome: str) -> None:
    """Note on ``exchange`` the job it ran (never audited)."""
    exchange.metadata[_KEY] = JobRun(seconds, outcome)


class JobMetrics:
    """``runnergw_jobs_total`` and ``runnergw_job_duration_seconds``, by route and outcome."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Counter("runnergw_jobs", "Pipeline jobs run, by route and outcome",
                            ("route", "outcome"), registry=registry)
        self.duration = Histogram("runnergw_job_duration_seconds", "How long pipeline jobs "
                                  "ran, by route and outcome", ("route", "outcome"),
                                  buckets=JOB_BUCKETS, registry=registry)

    def observe(self, exchange: Exchange, route: str) -> None:
        """Record the job ``exchange`` ran on ``route``, if it ran one."""
        run: Any = exchange.metadata.get(_KEY)
        if run is None:
            return
        outcome = run.outcome if run.outcome in JOB_OUTCOMES else "failed"
        self.jobs.labels(route, outcome).inc()
        self.duration.labels(route, outcome).observe(max(run.seconds, 0.0))
