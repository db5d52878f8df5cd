"""Configuration errors that name the file, the YAML path and the line the operator must fix."""

from __future__ import annotations

from collections.abc import Iterable

import attrs

__all__ = ["ConfigError", "ConfigErrors", "Origin"]


@attrs.frozen
class Origin:
    """Where a setting came from: a file and line, or an environment variable."""

    source: str
    """A file path, or ``environment variable NAME``."""
    line: int | None = None
    """1-based line in ``source``, when it is a file."""
    column: int | None = None
    """1-based column on ``line``, when known (a JSON model descriptor's value at fault)."""

    def describe(self) -> str:
        """Render as ``file:line:column``, ``file:line`` or just the source."""
        if self.line is None:
            return self.source
        if self.column is None:
            return f"{self.source}:{self.line}"
        return f"{self.source}:{self.line}:{self.column}"


class ConfigError(Exception):
    """One problem in the settings, located by origin and YAML path."""

    def __init__(self, origin: Origin, path: str, message: str) -> None:
        super().__init__(origin, path, message)
        self.origin = origin
        self.path = path
        self.message = message

    def __str__(self) -> str:
        where = self.origin.describe()
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigErrors(Exception):
    """Every problem found while loading settings, so the operator can fix them all at once."""

    def __init__(self, errors: Iterable[ConfigError]) -> None:
        self.errors = tuple(errors)
        super().__init__(self.errors)

    def __str__(self) -> str:
        count = len(self.errors)
        noun = "problem" if count == 1 else "problems"
        lines = [f"{count} configuration {noun}:"]
        lines.extend(f"  {error}" for error in self.errors)
        return "\n".join(lines)
