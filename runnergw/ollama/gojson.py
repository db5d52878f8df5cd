"""JSON request bodies read as Ollama's Go server reads them (``gojson_writing`` writes them
back).

Ollama decodes a request body with Go's ``encoding/json`` (through gin's ``ShouldBindJSON``)
into a typed struct. A body the gateway reads otherwise than Ollama does is a way past its
filters, so this module reads JSON the Go way:

* an object key matches a struct field without regard to case, by Unicode simple folding:
  beyond ASCII case, ``ſ`` (U+017F) is ``s`` and ``K`` (U+212A, the Kelvin sign) is ``k``; a
  key with any other non-ASCII character never matches an ASCII field name;
* when several keys match one field, Go decodes each in turn into that same field: the last
  string or number wins, a ``null`` clears a pointer, map or slice but leaves a string,
  number, bool or struct as it was, objects decoded into one map or struct add up, arrays
  decoded into one slice reuse its elements (:class:`GoType` names these cases);
* the keys of a Go map (Ollama's ``options``) match exactly, the last duplicate winning.

Where Go would quietly make something of a body that the gateway cannot read the same way,
the body is refused (:class:`GoJsonError`): bytes that are not UTF-8 and lone UTF-16
surrogate escapes (Go reads U+FFFD for both), data after the JSON value (gin's decoder
ignores it), numbers beyond float64 (Go refuses them where it decodes them and skips them
elsewhere), nesting deeper than Python's recursion allows (Go stops at 10000 levels), NaN and
Infinity (not JSON at all).
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

import attrs

__all__ = ["REMOVE", "GoJsonError", "GoType", "JsonObject", "decode_object", "fold_key"]

_MAX_DEPTH: Final = 10_000
"""Go's ``encoding/json`` refuses deeper nesting."""


class GoJsonError(ValueError):
    """A body Ollama would refuse, or one the gateway cannot read the way Ollama would.

    The message is safe to show the client: it never quotes the body.
    """


class _Remove(enum.Enum):
    REMOVE = "REMOVE"

    def __repr__(self) -> str:
        return "REMOVE"


REMOVE: Final = _Remove.REMOVE
"""Given as a value to :meth:`JsonObject.with_fields` or :meth:`JsonObject.with_exact`: the
field is removed and nothing put in its place."""


class GoType(enum.Enum):
    """The kind of Go field a key is decoded into, which decides what repeated keys make."""

    ANY = "any"
    """An interface, ``json.RawMessage`` or pointer to a scalar: the last value wins, and a
    ``null`` last is as if the field were not there."""
    SCALAR = "scalar"
    """A string, number or bool: the last value that is not ``null`` wins (Go leaves such a
    field as it was on ``null``)."""
    OBJECT = "object"
    """A map or pointer to a struct: the objects since the last ``null`` add up, as Go decodes
    each into the same map or struct; the result is one :class:`JsonObject` holding their
    pairs in order."""
    STRUCT = "struct"
    """A struct: as ``OBJECT``, but a ``null`` leaves the struct as it was."""
    SLICE = "slice"
    """A slice: Go decodes each array into the elements of the slice it already holds (an
    object element into the object there, anything else replacing it) and then cuts the slice
    to the array's length; ``null`` clears it and ``[]`` starts it afresh."""


_FOLDS: Final = str.maketrans({"\u017f": "s", "\u212a": "k"})


def fold_key(key: str) -> str | None:
    """``key`` as Go compares it with an ASCII field name (in lowercase), or None when the key
    can match no ASCII name (it has a non-ASCII character that folds to none)."""
    if key.isascii():
        return key.lower()
    folded = key.translate(_FOLDS)
    return folded.lower() if folded.isascii() else None


@attrs.frozen
class JsonObject:
    """A JSON object as its (key, value) pairs in order, duplicates kept.

    Nested objects are JsonObjects too, arrays are lists. Iterating gives the pairs.
    """

    pairs: tuple[tuple[str, Any], ...] = attrs.field(converter=tuple)
    _folded: tuple[str | None, ...] | None = attrs.field(
        default=None, init=False, eq=False, repr=False)
    _by_field: dict[str | None, list[Any]] | None = attrs.field(
        default=None, init=False, eq=False, repr=False)
    """Folded key → the values given for it, in order (built at the first ``get``)."""

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        return iter(self.pairs)

    def __len__(self) -> int:
        return len(self.pairs)

    def _folded_keys(self) -> tuple[str | None, ...]:
        if self._folded is None:
            object.__setattr__(self, "_folded", tuple(fold_key(key) for key, _ in self.pairs))
        assert self._folded is not None
        return self._folded

    def get(self, name: str, default: Any = None, *, go_type: GoType = GoType.ANY) -> Any:
        """The value Go decodes into the struct field whose JSON name is ``name``.

        Every key that folds to ``name`` counts (:func:`fold_key`), in order, and ``go_type``
        says what Go makes of several. ``default`` when no key matches or the field ends up
        unset.

        Raises:
            GoJsonError: an ``OBJECT``, ``STRUCT`` or ``SLICE`` field is given something
                other than an object (an array) or ``null``: Ollama refuses such a body.
        """
        values = self._fields().get(name.lower())
        if not values:
            return default
        if go_type is GoType.ANY:
            return default if values[-1] is None else values[-1]
        if go_type is GoType.SCALAR:
            return next((value for value in reversed(values) if value is not None), default)
        if go_type is GoType.SLICE:
            return _decoded_slice(name, values, default)
        return _decoded_object(name, values, default, clears=go_type is GoType.OBJECT)

    def get_exact(self, name: str, default: Any = None) -> Any:
        """The value of key ``name`` in a Go ``map[string]any`` (Ollama's ``options``): keys
        match exactly, the last duplicate wins whole; ``default`` when there is none (a JSON
        ``null`` is None, as Go's nil)."""
        for key, value in reversed(self.pairs):
            if key == name:
                return value
        return default

    def _fields(self) -> dict[str | None, list[Any]]:
        """Folded key → the values given for it, in order (built once)."""
        by_field = self._by_field
        if by_field is None:
            by_field = {}
            for folded, (_, value) in zip(self._folded_keys(), self.pairs, strict=True):
                by_field.setdefault(folded, []).append(value)
            object.__setattr__(self, "_by_field", by_field)
        return by_field

    def has(self, name: str) -> bool:
        """True when a key folds to ``name`` (even with a ``null`` value)."""
        return name.lower() in self._fields()

    def appended(self, fields: Mapping[str, Any]) -> JsonObject:
        """A copy with ``fields`` added after every pair (plain dicts become JsonObjects):
        read as Go reads ``append_fields``'s bytes."""
        added = tuple((name, JsonObject(tuple(value.items())) if type(value) is dict else value)
                      for name, value in fields.items())
        return JsonObject(self.pairs + added)

    def with_fields(self, fields: Mapping[str, Any]) -> JsonObject:
        """A copy where every pair whose key folds to a name in ``fields`` is removed, then
        ``(name, value)`` is added at the end for each value that is not :data:`REMOVE`.

        Go then reads each of these fields as set here, whatever spellings the body used.
        """
        names = {name.lower() for name in fields}
        kept = [pair for folded, pair in zip(self._folded_keys(), self.pairs, strict=True)
                if folded not in names]
        kept.extend((name, value) for name, value in fields.items() if value is not REMOVE)
        return JsonObject(kept)

    def with_exact(self, fields: Mapping[str, Any]) -> JsonObject:
        """:meth:`with_fields` for a Go map (Ollama's ``options``): keys compared exactly."""
        kept = [pair for pair in self.pairs if pair[0] not in fields]
        kept.extend((name, value) for name, value in fields.items() if value is not REMOVE)
        return JsonObject(kept)

    def to_python(self) -> dict[str, Any]:
        """Plain dicts and lists, the last of duplicate keys winning (for tests and reading)."""
        root: dict[str, Any] = {}
        stack: list[tuple[Any, Any]] = [(self, root)]
        while stack:
            source, target = stack.pop()
            if isinstance(source, JsonObject):
                for key, value in source.pairs:
                    target[key] = _plain_shell(value, stack)
            else:
                target.extend(_plain_shell(value, stack) for value in source)
        return root


def _plain_shell(value: Any, stack: list[tuple[Any, Any]]) -> Any:
    """``value`` itself, or an empty dict or list to be filled from it later."""
    if isinstance(value, JsonObject):
        shell: Any = {}
    elif isinstance(value, list):
        shell = []
    else:
        return value
    stack.append((value, shell))
    return shell


def _decoded_object(name: str, values: list[Any], default: Any, *, clears: bool) -> Any:
    pairs: list[tuple[str, Any]] | None = None
    for value in values:
        if value is None:
            if clears:
                pairs = None
        elif isinstance(value, JsonObject):
            pairs = [*(pairs or ()), *value.pairs]
        else:
            raise GoJsonError(f"{name} must be an object")
    return default if pairs is None else JsonObject(pairs)


def _decoded_slice(name: str, values: list[Any], default: Any) -> Any:
    held: list[Any] | None = None
    length = 0
    for value in values:
        if value is None:
            held, length = None, 0
        elif not isinstance(value, list):
            raise GoJsonError(f"{name} must be an array")
        elif not value:
            held, length = [], 0
        else:
            held = held if held is not None else []
            for index, element in enumerate(value):
                if index < len(held):
                    held[index] = _decoded_element(held[index], element)
                else:
                    held.append(element)
            length = len(value)
    return default if held is None else held[:length]


def _decoded_element(old: Any, new: Any) -> Any:
    """What Go leaves in a slice element that held ``old`` once ``new`` is decoded into it."""
    if isinstance(old, JsonObject):
        if isinstance(new, JsonObject):
            return JsonObject(old.pairs + new.pairs)
        if new is None:
            return old
    return new


_SURROGATE_ESCAPE: Final = re.compile(r"\\u[dD][89a-fA-F]")
_SURROGATE: Final = re.compile("[\ud800-\udfff]")
_STRUCTURE: Final = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def _refuse_constant(name: str) -> Any:
    raise GoJsonError("NaN and Infinity are not JSON")


def _checked_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise GoJsonError("a number is too large")
    return value


def _checked_int(text: str) -> int:
    if len(text) > 308 and math.isinf(float(text)):
        raise GoJsonError("a number is too large")
    return int(text)


_DECODER: Final = json.JSONDecoder(
    object_pairs_hook=JsonObject, parse_constant=_refuse_constant,
    parse_float=_checked_float, parse_int=_checked_int)


def decode_object(body: bytes) -> JsonObject:
    """The JSON object ``body`` holds, read as Ollama reads it (see the module's notes).

    Raises:
        GoJsonError: the body is empty, not UTF-8, not JSON, not one object, or holds
            something the gateway cannot read the way Ollama would; the message says which
            and never quotes the body.
    """
    if not body.strip(b" \t\r\n"):
        raise GoJsonError("missing request body")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise GoJsonError("the request body is not valid UTF-8") from None
    if (text.count("{") + text.count("[") > _MAX_DEPTH) and _too_deep(text):
        raise GoJsonError("the request body nests too deeply")
    try:
        value = _DECODER.decode(text)
    except GoJsonError:
        raise
    except json.JSONDecodeError as error:
        raise GoJsonError(_syntax_message(error)) from None
    except RecursionError:
        raise GoJsonError("the request body nests too deeply") from None
    except ValueError:
        raise GoJsonError("a number is too large") from None
    if not isinstance(value, JsonObject):
        raise GoJsonError("the request body must be a JSON object")
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise GoJsonError("the request body has a lone UTF-16 surrogate escape")
    return value


def _syntax_message(error: json.JSONDecodeError) -> str:
    if error.msg == "Extra data":
        return "the request body has data after the JSON value"
    return f"invalid JSON: {error.msg} at line {error.lineno} column {error.colno}"


def _too_deep(text: str) -> bool:
    depth = 0
    for match in _STRUCTURE.finditer(text):
        token = match.group()
        if token == "{" or token == "[":
            depth += 1
            if depth > _MAX_DEPTH:
                return True
        elif token == "}" or token == "]":
            depth -= 1
    return False


def _has_lone_surrogate(value: Any) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return True
        elif isinstance(item, JsonObject):
            for key, member in item.pairs:
                stack.append(key)
                stack.append(member)
        elif isinstance(item, list):
            stack.extend(item)
    return False
