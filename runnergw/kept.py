"""The parts that outlive a reload: owned by the service, lent to each generation of routes.

A reload builds new routes (filters, terminals) from new settings; what these parts hold must
not start again with them: the limit counters and the usage ledger (a reload must not give
every subject a fresh quota), the job launcher (jobs under way keep running), each pipeline
endpoint's job slots (its ``concurrency`` counts the jobs of the routes a reload replaced
too), the runner hosts (their connections, health and loaded models). Each generation of
routes uses them; what the current routes use is stopped with them when the gateway stops.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

import attrs

from runnergw.config.settings import Settings
from runnergw.jobs.parts import JobParts
from runnergw.jobs.slots import JobSlots
from runnergw.limits.parts import LimitParts
from runnergw.upstream.registry import UpstreamHosts

__all__ = ["KeptParts"]


@attrs.define
class KeptParts:
    """What every generation of routes shares, made once from the settings the gateway
    started with (or, for the limits, with the first settings that have a ``roles``
    section).

    Add a part here when it holds state a reload must keep; ``build_router`` hands each one
    to the routes (``FilterContext``).
    """

    limits: LimitParts | None = None
    """The limit state, quota days and usage ledger, once a ``roles`` section exists; the
    service starts it, and stops it when the gateway stops."""
    jobs: JobParts | None = None
    """The job launcher, the jobs directory and the endpoints' job slots of the pipelines,
    when they are enabled; the command routes stop it when the gateway stops
    (``CommandTerminal.stop``), never when a reload retires them (``CommandTerminal.retire``)."""
    hosts: UpstreamHosts | None = None
    """The runners' hosts, by key: a runner a reload keeps keeps its hosts; the reload
    closes those no route uses any more once the routes it replaced are idle."""

    def job_slots(self) -> Mapping[str, JobSlots]:
        """Each pipeline endpoint's job slots, by endpoint: those the current routes serve,
        and those of a route a reload removed while its last jobs run (the status line and
        the metrics count jobs here)."""
        return self.jobs.slots.current() if self.jobs is not None else {}

    @classmethod
    def from_settings(cls, settings: Settings, reactor: Any) -> KeptParts:
        """The parts ``settings`` need, not started."""
        pipelines = settings.pipelines
        jobs = None
        if pipelines.enabled:
            jobs = JobParts(reactor, pipelines.jobs_path, shutil.which("ffprobe"),
                            pipelines.environment, pipelines.job_niceness)
        limits = LimitParts.from_settings(settings, reactor) if settings.roles else None
        return cls(limits=limits, jobs=jobs, hosts=UpstreamHosts(reactor))
