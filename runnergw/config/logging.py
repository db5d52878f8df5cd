"""The ``logging`` section."""

from __future__ import annotations

import attrs

from runnergw.config.reader import MapReader

__all__ = ["LoggingSettings", "LOG_LEVELS"]

LOG_LEVELS = ("trace", "debug", "info", "warn", "error")


@attrs.frozen
class LoggingSettings:
    """Log verbosity (``twistd --logger runnergw.logs.json_observer`` gives JSON lines)."""

    level: str = "info"

    @classmethod
    def from_yaml(cls, section: MapReader) -> LoggingSettings:
        """Read the section, recording problems in its sink."""
        settings = cls(
            level=section.choice("level", "info", LOG_LEVELS + ("warning",)),
        )
        section.finish()
        return settings
