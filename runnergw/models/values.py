"""Typed reading of a located JSON document: each getter returns the value or None, and
records a problem located at the value's line and column."""

from __future__ import annotations

import math
import re

from runnergw.models.located_json import Node, join_path

__all__ = ["DescriptorError", "ValueReader"]

_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]+")
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


class DescriptorError(Exception):
    """One problem in a model descriptor, located by file, line and column.

    Attributes:
        path: The descriptor file, as given to the loader.
        line: The 1-based line of the value at fault, or None when unknown.
        column: The 1-based column of the value at fault, or None when unknown.
        message: What is wrong.
    """

    def __init__(
        self, path: str, message: str, *, line: int | None = None, column: int | None = None
    ) -> None:
        super().__init__(path, message, line, column)
        self.path = path
        self.line = line
        self.column = column
        self.message = message

    def __str__(self) -> str:
        where = self.path
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.message}"


class ValueReader:
    """Reads the values of one descriptor, collecting problems with their locations."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        self.text = text
        self.problems: list[DescriptorError] = []

    def locate(self, offset: int | None) -> tuple[int | None, int | None]:
        """Turn an offset of the text into a 1-based line and column (None: unknown)."""
        if offset is None:
            return None, None
        line = self.text.count("\n", 0, offset) + 1
        return line, offset - self.text.rfind("\n", 0, offset)

    def error(self, message: str, offset: int | None) -> DescriptorError:
        """Build a problem located at an offset of the text (None: unknown)."""
        line, column = self.locate(offset)
        return DescriptorError(self.path, message, line=line, column=column)

    def report(self, node: Node, message: str) -> None:
        """Record a problem with a value."""
        self.problems.append(self.error(f"{node.where}: {message}", node.offset))

    def report_missing(self, parent: Node, key: str) -> None:
        """Record a missing required member, located at the object that lacks it."""
        self.problems.append(
            self.error(f"missing required key {join_path(parent.where, key)}", parent.offset)
        )

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
