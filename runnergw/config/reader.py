"""Path-aware readers: every value read from settings knows its YAML path and origin.

A reader records problems instead of stopping at the first one, so ``runnergw check`` can
list every mistake in one run; each reading method returns the default when the value is bad.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import attrs

from runnergw.config.errors import ConfigError, Origin
from runnergw.config.yamlfile import MarkedList, MarkedMap

__all__ = [
    "ErrorSink",
    "describe",
    "MapReader",
    "ListenAddress",
    "parse_go_duration",
    "parse_size",
]

T = TypeVar("T")

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}


def parse_go_duration(text: str) -> float:
    """Parse a Go duration (``8766h``, ``1h30m``, ``500ms``, ``5s``) into seconds.

    Raises:
        ValueError: not a Go duration.
    """
    text = text.strip()
    if text in ("0", "+0"):
        return 0.0
    if not text or text[0] == "-":
        raise ValueError("expected a positive duration such as 5s, 10m or 8766h")
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if position != len(text):
        raise ValueError("expected a duration such as 5s, 10m or 8766h (units ns us ms s m h)")
    return total


def parse_size(text: str) -> int:
    """Parse a byte size (``8KiB``, ``64MiB``, ``1GB`` or a plain number of bytes).

    Raises:
        ValueError: not a size.
    """
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise ValueError("expected a size such as 8KiB, 64MiB or 2GiB")
    unit = (match.group(2) or "B").lower()
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


@attrs.frozen
class ListenAddress:
    """A ``host:port`` listen address; an empty host means every interface."""

    host: str
    port: int

    def is_loopback(self) -> bool:
        """True when only this machine can connect."""
        return self.host in ("127.0.0.1", "::1", "localhost") or self.host.startswith("127.")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"


def parse_listen_address(text: str) -> ListenAddress:
    """Parse ``":8443"``, ``"127.0.0.1:8443"`` or ``"[::1]:8443"``.

    Raises:
        ValueError: not of that form.
    """
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
    else:
        host, sep, port = text.rpartition(":")
        if ":" in host:
            raise ValueError('IPv6 addresses need brackets, as in "[::1]:8443"')
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f'expected "host:port" or ":port", got "{text}"')
    return ListenAddress(host, int(port))


class ErrorSink:
    """Collects configuration problems."""

    def __init__(self) -> None:
        self.errors: list[ConfigError] = []

    def add(self, origin: Origin, path: str, message: str) -> None:
        """Record one problem."""
        self.errors.append(ConfigError(origin, path, message))


def describe(value: object) -> str:
    """How a value found in the settings is named in an error message."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (MarkedMap, dict)):
        return "a mapping"
    if isinstance(value, (MarkedList, list)):
        return "a list"
    return repr(value)


class MapReader:
    """Reads one YAML mapping, knowing its path (``runners[1]``) and where each key came from."""

    def __init__(self, data: MarkedMap | None, path: str, origin: Origin, sink: ErrorSink) -> None:
        self._data: MarkedMap = data if data is not None else MarkedMap()
        self.path = path
        self.origin = getattr(self._data, "origin", origin)
        self.sink = sink
        self._seen: set[str] = set()

    def child_path(self, key: str) -> str:
        """The YAML path of ``key`` in this mapping."""
        return f"{self.path}.{key}" if self.path else key

    def origin_of(self, key: str) -> Origin:
        """Where ``key`` was written, or this mapping's origin when it is absent."""
        origins = getattr(self._data, "key_origins", {})
        return origins.get(key, self.origin)

    def error(self, key: str, message: str) -> None:
        """Record a problem with ``key``."""
        self.sink.add(self.origin_of(key), self.child_path(key), message)

    def has(self, key: str) -> bool:
        """True when the key is present (even if null)."""
        return key in self._data

    def raw(self, key: str) -> Any:
        """The value as written (None when absent); the key counts as read."""
        self._seen.add(key)
        return self._data.get(key)

    def _read(self, key: str, default: T, convert: Callable[[Any], T]) -> T:
        value = self.raw(key)
        if value is None:
            return default
        try:
            return convert(value)
        except (ValueError, TypeError) as e:
            self.error(key, str(e))
            return default

    def string(self, key: str, default: str = "") -> str:
        """A string; numbers are not silently turned into strings."""

        def convert(value: Any) -> str:
            if not isinstance(value, str):
                raise TypeError(f"expected a string, got {describe(value)}")
            return value

        return self._read(key, default, convert)

    def choice(self, key: str, default: str, choices: Sequence[str]) -> str:
        """A string that must be one of ``choices`` (compared case-insensitively)."""

        def convert(value: Any) -> str:
            if not isinstance(value, str) or value.lower() not in choices:
                allowed = ", ".join(choices)
                raise ValueError(f"expected one of {allowed}; got {describe(value)}")
            return value.lower()

        return self._read(key, default, convert)

    def boolean(self, key: str, default: bool) -> bool:
        """A YAML boolean (``true``/``false``)."""

        def convert(value: Any) -> bool:
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            if not isinstance(value, bool):
                raise TypeError(f"expected true or false, got {describe(value)}")
            return value

        return self._read(key, default, convert)

    def integer(self, key: str, default: int, minimum: int = 0, maximum: int | None = None) -> int:
        """An integer within bounds."""

        def convert(value: Any) -> int:
            if isinstance(value, str) and value.strip().isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"expected a whole number, got {describe(value)}")
            if value < minimum or (maximum is not None and value > maximum):
                upper = "" if maximum is None else f" and at most {maximum}"
                raise ValueError(f"expected at least {minimum}{upper}, got {value}")
            return value

        return self._read(key, default, convert)

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        """A number (whole or not) of at least ``minimum``."""

        def convert(value: Any) -> float:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"expected a number, got {describe(value)}")
            if value < minimum:
                raise ValueError(f"expected at least {minimum:g}, got {value:g}")
            return float(value)

        return self._read(key, default, convert)

    def duration(self, key: str, default: float) -> float:
        """A Go duration string (``5s``) or a number of seconds, in seconds."""

        def convert(value: Any) -> float:
            if isinstance(value, bool):
                raise TypeError(f"expected a duration such as 5s, got {describe(value)}")
            if isinstance(value, (int, float)):
                if value < 0:
                    raise ValueError("expected a positive duration")
                return float(value)
            if not isinstance(value, str):
                raise TypeError(f"expected a duration such as 5s, got {describe(value)}")
            return parse_go_duration(value)

        return self._read(key, default, convert)

    def size(self, key: str, default: int) -> int:
        """A byte size (``64MiB``) or a number of bytes."""

        def convert(value: Any) -> int:
            if isinstance(value, bool):
                raise TypeError(f"expected a size such as 64MiB, got {describe(value)}")
            if isinstance(value, int) and value >= 0:
                return value
            if not isinstance(value, str):
                raise TypeError(f"expected a size such as 64MiB, got {describe(value)}")
            return parse_size(value)

        return self._read(key, default, convert)

    def listen_address(self, key: str, default: ListenAddress) -> ListenAddress:
        """A ``host:port`` listen address."""

        def convert(value: Any) -> ListenAddress:
            if not isinstance(value, str):
                raise TypeError(f'expected "host:port", got {describe(value)}')
            return parse_listen_address(value)

        return self._read(key, default, convert)

    def string_list(self, key: str, default: Sequence[str] = ()) -> tuple[str, ...]:
        """A list of strings; a single string is taken as a one-item list."""
        value = self.raw(key)
        if value is None:
            return tuple(default)
        if isinstance(value, str):
            return (value,)
        if not isinstance(value, list):
            self.error(key, f"expected a list of strings, got {describe(value)}")
            return tuple(default)
        result = []
        for index, item in enumerate(value):
            if not isinstance(item, str):
                origins = getattr(value, "item_origins", None)
                origin = origins[index] if origins else self.origin_of(key)
                self.sink.add(origin, f"{self.child_path(key)}[{index}]",
                              f"expected a string, got {describe(item)}")
                continue
            result.append(item)
        return tuple(result)

    def string_map(self, key: str) -> dict[str, str]:
        """A mapping of strings to strings (header names to values)."""
        section = self.section(key)
        return {name: section.string(name) for name in section.keys()}

    def section(self, key: str) -> MapReader:
        """The mapping under ``key`` (empty when absent)."""
        value = self.raw(key)
        if value is not None and not isinstance(value, MarkedMap):
            self.error(key, f"expected a mapping, got {describe(value)}")
            value = None
        return MapReader(value, self.child_path(key), self.origin_of(key), self.sink)

    def sections(self, key: str) -> Iterator[MapReader]:
        """Each mapping in the list under ``key``."""
        value = self.raw(key)
        if value is None:
            return
        if not isinstance(value, list):
            self.error(key, f"expected a list, got {describe(value)}")
            return
        origins = getattr(value, "item_origins", None) or [self.origin_of(key)] * len(value)
        for index, item in enumerate(value):
            path = f"{self.child_path(key)}[{index}]"
            if not isinstance(item, MarkedMap):
                self.sink.add(origins[index], path, f"expected a mapping, got {describe(item)}")
                continue
            yield MapReader(item, path, origins[index], self.sink)

    def keys(self) -> list[str]:
        """Every key present."""
        return list(self._data.keys())

    def finish(self) -> None:
        """Record every key that no reader asked for: unknown keys are typos, not no-ops."""
        for key in self._data:
            if key not in self._seen:
                self.error(key, "unknown setting (check the spelling; see the settings reference)")
