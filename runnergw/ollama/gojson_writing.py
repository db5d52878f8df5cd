"""JSON bodies written back for Ollama: whole (``encode``, duplicates kept), or with fields
appended to the client's bytes (``append_fields``), read by Go as ``JsonObject`` reads them."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from runnergw.ollama.gojson import JsonObject

__all__ = ["append_fields", "encode"]


class _Text(str):
    """JSON text already written (punctuation), as opposed to a string value to encode."""


_END_OBJECT: Final = _Text("}")
_END_ARRAY: Final = _Text("]")
_string: Final = json.encoder.encode_basestring


class _ExactDuplicate(Exception):
    """An object repeats a key exactly: a dict cannot hold it, the pairs are written one by
    one."""


def _plain(value: Any) -> Any:
    """``value`` with JsonObjects as dicts, for the C encoder; raises ``_ExactDuplicate``."""
    kind = type(value)
    if kind is JsonObject or kind is dict:
        pairs = value.pairs if kind is JsonObject else tuple(value.items())
        plain = {key: _plain(member) for key, member in pairs}
        if len(plain) != len(pairs):
            raise _ExactDuplicate
        for key in plain:
            if type(key) is not str:
                raise TypeError(f"object keys must be strings, not {type(key).__name__}")
        return plain
    if kind is list or kind is tuple:
        return [_plain(member) for member in value]
    return value


_ENCODER: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"),
                                   allow_nan=False, check_circular=False)


def encode(value: Any) -> bytes:
    """``value`` as compact UTF-8 JSON: JsonObjects as their pairs (duplicates kept), dicts,
    lists and tuples, strings, ints, floats (written so they read back equal), bools, None.

    Raises:
        ValueError: a float is NaN or infinite, or a string holds a lone surrogate.
        TypeError: a value or key of another type.
    """
    try:
        text = _ENCODER.encode(_plain(value))
    except (_ExactDuplicate, RecursionError):
        # Rare: a key repeated exactly, or nesting deeper than Python's recursion.
        return _encode_pairs(value)
    except ValueError:
        raise ValueError("NaN and infinite numbers cannot be written as JSON") from None
    return text.encode("utf-8")


def _small(value: Any) -> str:
    """A field value the gateway sets (a count, a duration, a flag, a small object), written
    without building an encoder for it."""
    kind = type(value)
    if kind is int:
        return int.__repr__(value)
    if kind is str:
        return _string(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is dict:
        return "{" + ",".join(_string(name) + ":" + _small(member)
                              for name, member in value.items()) + "}"
    return _ENCODER.encode(_plain(value))


def append_fields(body: bytes, fields: Mapping[str, Any]) -> bytes:
    """``body`` (one JSON object, as ``decode_object`` accepted it) with ``fields`` written
    after its last member, the rest of its bytes untouched.

    Go reads a field given twice as the last one for a string, number, bool or pointer to
    one, and an object given twice into one map or struct (members of the later one win):
    appending sets a scalar field, or members of an object field (``options``,
    ``stream_options``), exactly as ``JsonObject.appended`` reads them, without writing
    the whole body again (a chat's images are megabytes).
    """
    if not fields:
        return body
    end = len(body.rstrip(b" \t\r\n"))
    if end == 0 or body[end - 1:end] != b"}":
        raise ValueError("not a JSON object")
    written = ",".join(_string(name) + ":" + _small(value)
                       for name, value in fields.items()).encode("utf-8")
    head = body[:end - 1].rstrip(b" \t\r\n")
    separator = b"" if head.endswith(b"{") else b","
    return head + separator + written + b"}"


def _encode_pairs(value: Any) -> bytes:
    """``encode`` for values holding an object that repeats a key exactly."""
    parts: list[str] = []
    stack: list[Any] = [value]
    while stack:
        item = stack.pop()
        if type(item) is _Text:
            parts.append(item)
        elif isinstance(item, (JsonObject, dict)):
            pairs = item.pairs if isinstance(item, JsonObject) else tuple(item.items())
            if not pairs:
                parts.append("{}")
                continue
            parts.append("{")
            stack.append(_END_OBJECT)
            for index in range(len(pairs) - 1, -1, -1):
                key, member = pairs[index]
                if not isinstance(key, str):
                    raise TypeError(f"object keys must be strings, not {type(key).__name__}")
                stack.append(member)
                stack.append(_Text(("," if index else "") + _string(key) + ":"))
        elif isinstance(item, (list, tuple)):
            if not item:
                parts.append("[]")
                continue
            parts.append("[")
            stack.append(_END_ARRAY)
            for index in range(len(item) - 1, -1, -1):
                stack.append(item[index])
                if index:
                    stack.append(_Text(","))
        else:
            parts.append(_scalar(item))
    return "".join(parts).encode("utf-8")


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return _string(value)
    if isinstance(value, int):
        return int.__repr__(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("NaN and infinite numbers cannot be written as JSON")
        return float.__repr__(value)
    raise TypeError(f"{type(value).__name__} cannot be written as JSON")
