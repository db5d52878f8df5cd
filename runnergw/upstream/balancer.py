"""Which host of a runner takes the next request: the least busy healthy one, or one that
already has the requested model loaded when it is not much busier."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import attrs
from twisted.internet.defer import Deferred, gatherResults

from runnergw.config.runner_pool import PoolSettings
from runnergw.upstream.host import UpstreamHost

__all__ = ["HostBalancer", "HostStatus"]


@attrs.frozen
class HostStatus:
    """What the metrics and ``/readyz`` see of one host of a runner."""

    runner: str
    host: str
    """``host:port`` as configured."""
    healthy: bool
    ejections: int
    active: int
    loaded_models: tuple[str, ...]


class HostBalancer:
    """Chooses among a runner's hosts.

    A healthy host is always preferred to an ejected one; among the healthy, the one with the
    fewest requests under way (ties taken in turn). With ``affinity``, a request naming a
    model goes to a host that has it loaded, if one is at most ``affinity_slack`` requests
    busier than the least busy host. When every host is ejected, the one whose ejection ends
    soonest is tried (the request may still succeed: it is only refused when it fails).
    """

    def __init__(self, runner: str, hosts: Sequence[UpstreamHost], options: PoolSettings) -> None:
        if not hosts:
            raise ValueError("a runner needs at least one host")
        self.runner = runner
        self.hosts = tuple(hosts)
        self.options = options
        self._turn = 0

    def choose(self, model: str | None = None,
               exclude: Collection[UpstreamHost] = ()) -> UpstreamHost | None:
        """The host for the next try of a request (None: every candidate was tried).

        ``model`` is the model the request names when a filter read it; ``exclude`` are the
        hosts this request already failed to reach.
        """
        if not any(host.healthy for host in self.hosts):
            waiting = [host for host in self.hosts if host not in exclude]
            return min(waiting, key=lambda host: host.ejected_until or 0.0, default=None)
        candidates = [host for host in self.hosts if host.healthy and host not in exclude]
        if not candidates:
            return None
        least = min(host.active for host in candidates)
        chosen = [host for host in candidates if host.active == least]
        if model and self.options.affinity:
            warm = [host for host in candidates
                    if host.active <= least + self.options.affinity_slack
                    and host.has_model(model)]
            if warm:
                fewest = min(host.active for host in warm)
                chosen = [host for host in warm if host.active == fewest]
        return self._in_turn(chosen)

    def _in_turn(self, chosen: list[UpstreamHost]) -> UpstreamHost:
        count = len(self.hosts)
        for offset in range(count):
            index = (self._turn + offset) % count
            if self.hosts[index] in chosen:
                self._turn = (index + 1) % count
                return self.hosts[index]
        raise AssertionError("chosen hosts are hosts of this runner")

    def statuses(self) -> tuple[HostStatus, ...]:
        """Each host's state, for metrics."""
        return tuple(HostStatus(self.runner, host.address, host.healthy, host.ejections,
                                host.active, host.loaded_models) for host in self.hosts)

    def not_ready_reasons(self) -> list[str]:
        """Why the runner cannot take new work: no healthy host."""
        if any(host.healthy for host in self.hosts):
            return []
        return [f"runner {self.runner}: no healthy host"]

    def start(self) -> None:
        """The gateway serves: every host is checked from now on (its health, and its loaded
        models with affinity), a runner of one host too, so that ``/readyz`` follows the
        hosts while no request comes. Where affinity chooses among several hosts their
        loaded models are read at once, else the first check comes an interval later."""
        at_once = self.options.affinity and len(self.hosts) > 1
        for host in self.hosts:
            host.start_checks(at_once)

    def close(self) -> Deferred[Any]:
        """Stop probes and polls and close every host's connections."""
        return gatherResults([host.close() for host in self.hosts])
