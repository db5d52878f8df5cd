"""Typed reading of a model descriptor's JSON, problems reported as the settings' are.

Each getter returns the value (or None, or a default) and records what is wrong as a
:class:`~runnergw.config.errors.ConfigError`: the file with the line and column of the value
at fault, and the value's JSON path (``fields[2].maxSize``), so ``runnergw check`` and the
gateway's start list descriptor problems exactly like settings problems.
"""

from __future__ import annotations

import math
import re

from runnergw.config.errors import ConfigError, Origin
from runnergw.config.reader import ErrorSink
from runnergw.models.located_json import Node, join_path

__all__ = ["ValueReader"]

_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]+")
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class ValueReader:
    """Reads the values of one descriptor file, collecting every problem with its place."""

    def __init__(self, path: str, text: str) -> None:
        """``path`` names the file in every problem; ``text`` is what it holds."""
        self.path = path
        self.text = text
        self.sink = ErrorSink()

    @property
    def problems(self) -> list[ConfigError]:
        """Every problem recorded so far, in the order found."""
        return self.sink.errors

    def origin(self, offset: int | None) -> Origin:
        """The file, with the 1-based line and column of an offset of its text (None: the
        file alone)."""
        if offset is None:
            return Origin(self.path)
        line = self.text.count("\n", 0, offset) + 1
        return Origin(self.path, line, offset - self.text.rfind("\n", 0, offset))

    def problem(self, where: str, message: str, offset: int | None = None) -> None:
        """Record a problem with the value at JSON path ``where`` ("" for the whole file),
        located at ``offset``."""
        self.sink.add(self.origin(offset), where, message)

    def report(self, node: Node, message: str) -> None:
        """Record a problem with a value."""
        self.problem(node.where, message, node.offset)

    def report_missing(self, parent: Node, key: str) -> None:
        """Record a missing required member, located at the object that lacks it."""
        self.problem(join_path(parent.where, key), "required", parent.offset)

    def typed(self, parent: Node, key: str, kind: type, noun: str) -> Node | None:
        """Return a member when it has the expected JSON type, reporting it otherwise."""
        node = parent.member(key)
        if node is None:
            return None
        if not isinstance(node.value, kind):
            self.report(node, f"must be {noun}")
            return None
        return node

    def string(self, parent: Node, key: str, *, required: bool = False) -> str | None:
        """Read a string member; a required one must be present and not empty."""
        node = parent.member(key)
        if node is None:
            if required:
                self.report_missing(parent, key)
            return None
        if not isinstance(node.value, str) or (required and not node.value):
            self.report(node, "must be a non-empty string" if required else "must be a string")
            return None
        return node.value

    def identifier(self, parent: Node, key: str) -> str | None:
        """Read a required id: letters, digits, ``_`` and ``-``."""
        value = self.string(parent, key, required=True)
        if value is not None and not _IDENTIFIER.fullmatch(value):
            node = parent.member(key)
            if node is not None:
                self.report(node, "must use only letters, digits, '_' and '-'")
            return None
        return value

    def boolean(self, parent: Node, key: str, default: bool) -> bool:
        """Read a boolean member, also written ``"true"`` or ``"false"``."""
        node = parent.member(key)
        if node is None:
            return default
        if isinstance(node.value, bool):
            return node.value
        if isinstance(node.value, str) and node.value.strip().lower() in ("true", "false"):
            return node.value.strip().lower() == "true"
        self.report(node, "must be true or false")
        return default

    def number(self, parent: Node, key: str) -> float | None:
        """Read a finite number member, also written as a numeric string."""
        node = parent.member(key)
        if node is None:
            return None
        value = node.value
        if isinstance(value, str) and _NUMERIC.fullmatch(value.strip()):
            value = float(value.strip())
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.report(node, "must be a number")
            return None
        try:
            result = float(value)
        except OverflowError:
            result = math.inf
        if not math.isfinite(result):
            self.report(node, "must be a finite number")
            return None
        return result
