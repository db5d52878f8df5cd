"""Logging: the ``logging.level`` gate for runnergw's events, and a JSON observer for twistd."""

from __future__ import annotations

import sys
from typing import Any

from twisted.logger import (
    ILogObserver,
    LogLevel,
    globalLogPublisher,
    jsonFileLogObserver,
)
from zope.interface import implementer

__all__ = ["LEVELS", "level_gate", "json_observer"]

LEVELS = {
    "trace": LogLevel.debug,
    "debug": LogLevel.debug,
    "info": LogLevel.info,
    "warn": LogLevel.warn,
    "warning": LogLevel.warn,
    "error": LogLevel.error,
}


@implementer(ILogObserver)
class LevelGate:
    """Passes events at or above ``level`` on to the global log publisher."""

    def __init__(self) -> None:
        self.level = LogLevel.info

    def set_level(self, name: str) -> None:
        """Apply ``logging.level`` (trace, debug, info, warn, error)."""
        self.level = LEVELS[name]

    def __call__(self, event: dict[str, Any]) -> None:
        if event["log_level"] >= self.level:
            globalLogPublisher(event)


level_gate = LevelGate()
"""The process-wide gate every runnergw ``Logger`` writes through (the level is per process)."""


def json_observer() -> ILogObserver:
    """For ``twistd --logger runnergw.logs.json_observer``: one JSON event per line on stdout."""
    return jsonFileLogObserver(sys.stdout, recordSeparator="")
