"""JSON decoded with the place of every value: objects and arrays remember where each
member or element starts in the text, so that a problem can be reported at its line and
column. Duplicate member names are refused rather than silently overwritten."""

from __future__ import annotations

import json
from json.decoder import JSONArray, JSONObject
from json.scanner import py_make_scanner
from typing import Any

import attrs

__all__ = [
    "DuplicateKey",
    "LocatedArray",
    "LocatedObject",
    "LocatingDecoder",
    "Node",
    "join_path",
]


class LocatedObject(dict[str, Any]):
    """A JSON object that remembers where the value of each member starts."""

    def __init__(self) -> None:
        super().__init__()
        self.offsets: dict[str, int] = {}


class LocatedArray(list[Any]):
    """A JSON array that remembers where each element starts."""

    def __init__(self, values: list[Any], offsets: list[int]) -> None:
        super().__init__(values)
        self.offsets = offsets


class DuplicateKey(Exception):
    """A JSON object names the same member twice."""

    def __init__(self, key: str, offset: int) -> None:
        super().__init__(key, offset)
        self.key = key
        self.offset = offset


def _located_object(
    s_and_end: tuple[str, int],
    strict: bool,
    scan_once: Any,
    object_hook: Any,
    object_pairs_hook: Any,
    memo: dict[str, str] | None = None,
) -> tuple[LocatedObject, int]:
    """Parse a JSON object like :func:`json.decoder.JSONObject`, recording value offsets."""
    starts: list[int] = []

    def scan(text: str, index: int) -> Any:
        starts.append(index)
        return scan_once(text, index)

    def build(pairs: list[tuple[str, Any]]) -> LocatedObject:
        result = LocatedObject()
        for (key, value), start in zip(pairs, starts, strict=True):
            if key in result:
                raise DuplicateKey(key, start)
            result[key] = value
            result.offsets[key] = start
        return result

    return JSONObject(s_and_end, strict, scan, None, build, memo)


def _located_array(s_and_end: tuple[str, int], scan_once: Any) -> tuple[LocatedArray, int]:
    """Parse a JSON array like :func:`json.decoder.JSONArray`, recording element offsets."""
    starts: list[int] = []

    def scan(text: str, index: int) -> Any:
        starts.append(index)
        return scan_once(text, index)

    values, end = JSONArray(s_and_end, scan)
    return LocatedArray(values, starts[: len(values)]), end


class LocatingDecoder(json.JSONDecoder):
    """A strict JSON decoder whose objects and arrays know where their values start."""

    def __init__(self) -> None:
        super().__init__()
        self.parse_object = _located_object
        self.parse_array = _located_array
        self.scan_once = py_make_scanner(self)


def join_path(where: str, key: str) -> str:
    """Name a member of a located value: ``fields[2]`` and ``min`` give ``fields[2].min``."""
    return f"{where}.{key}" if where else key


@attrs.frozen
class Node:
    """A decoded JSON value with its offset in the text and its name in the document."""

    value: Any
    offset: int | None
    where: str

    def member(self, key: str) -> Node | None:
        """Return a member of this object, or None when absent or null."""
        if not isinstance(self.value, LocatedObject) or self.value.get(key) is None:
            return None
        return Node(self.value[key], self.value.offsets[key], join_path(self.where, key))

    def elements(self) -> list[Node]:
        """Return the elements of this array."""
        pairs = zip(self.value, self.value.offsets, strict=True)
        return [
            Node(value, offset, f"{self.where}[{index}]")
            for index, (value, offset) in enumerate(pairs)
        ]
