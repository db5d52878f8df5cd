"""The ``shutdown`` section: how a stop (SIGTERM) drains the gateway."""

from __future__ import annotations

import attrs

from runnergw.config.reader import MapReader

__all__ = ["ShutdownSettings"]


@attrs.frozen
class ShutdownSettings:
    """A stop first turns readiness "not ready" and keeps serving for ``readiness_delay``,
    then refuses new connections and gives the exchanges under way ``grace`` to finish."""

    readiness_delay: float = 5.0
    """Time the gateway keeps serving and accepting after readiness turned "not ready", so a
    load balancer stops sending new work first (``readinessDelay``)."""
    grace: float = 30.0
    """Time the exchanges under way get once new connections are refused (``grace``); what
    is left after it is ended with a final error."""

    @property
    def longest(self) -> float:
        """The longest a drain takes before the gateway exits (its own stop aside)."""
        return self.readiness_delay + self.grace

    @classmethod
    def from_yaml(cls, section: MapReader) -> ShutdownSettings:
        """Read the section, recording problems in its sink."""
        defaults = cls()
        settings = cls(
            readiness_delay=section.duration("readinessDelay", defaults.readiness_delay),
            grace=section.duration("grace", defaults.grace),
        )
        for key, value in (("readinessDelay", settings.readiness_delay),
                           ("grace", settings.grace)):
            if value < 0:
                section.error(key, "must not be negative")
        section.finish()
        return settings
