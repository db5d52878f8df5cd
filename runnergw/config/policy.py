"""The ``policy`` section: how roles apply (default role, day boundary, usage ledger)."""

from __future__ import annotations

import zoneinfo

import attrs

from runnergw.config.errors import Origin
from runnergw.config.reader import MapReader

__all__ = ["PolicySettings"]


@attrs.frozen
class PolicySettings:
    """Settings shared by every role; they matter only once a ``roles`` section exists."""

    default_role: str = "user"
    """The role of a token carrying neither a ``role`` nor a ``roles`` claim (runner-gateway's
    tokens carry none)."""
    time_zone: str = "UTC"
    """Daily quotas reset at midnight in this IANA time zone."""
    ledger_path: str = "usage.sqlite"
    """The SQLite usage ledger: tokens per subject, model and day, kept across restarts."""
    max_body_size: int = 16 << 20
    """Largest request body read to check its model (chat bodies carry images); larger: 413."""
    origin: Origin = attrs.field(default=Origin(""), eq=False, repr=False)

    @property
    def zone(self) -> zoneinfo.ZoneInfo:
        """The time zone whose midnight ends a quota day."""
        return zoneinfo.ZoneInfo(self.time_zone)

    @classmethod
    def from_yaml(cls, section: MapReader) -> PolicySettings:
        """Read the section, recording problems in its sink."""
        defaults = cls()
        settings = cls(
            default_role=section.string("defaultRole", defaults.default_role),
            time_zone=section.string("timeZone", defaults.time_zone),
            ledger_path=section.string("ledgerPath", defaults.ledger_path),
            max_body_size=section.size("maxBodySize", defaults.max_body_size),
            origin=section.origin,
        )
        try:
            settings.zone  # noqa: B018 (checked now, not at the first request)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            section.error("timeZone", f'unknown time zone "{settings.time_zone}" (an IANA '
                                      'name such as UTC or Europe/Paris)')
            settings = attrs.evolve(settings, time_zone="UTC")
        if not settings.ledger_path:
            section.error("ledgerPath", "the usage ledger needs a file (quotas outlive restarts)")
        section.finish()
        return settings
