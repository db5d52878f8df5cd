"""The ``audit`` section: where the one-line-per-request JSON audit trail goes."""

from __future__ import annotations

import attrs

from runnergw.config.reader import MapReader

__all__ = ["AuditSettings"]


@attrs.frozen
class AuditSettings:
    """``path: "-"`` writes to standard output; ``path: ""`` turns the trail off."""

    path: str = "-"

    @classmethod
    def from_yaml(cls, section: MapReader) -> AuditSettings:
        """Read the section, recording problems in its sink."""
        settings = cls(path=section.string("path", "-"))
        section.finish()
        return settings
