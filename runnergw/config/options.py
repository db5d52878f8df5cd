"""Reading a filter's options from settings, by the fields of its attrs ``Options`` class.

Each field is a camelCase key (``per_minute`` → ``perMinute``; a private ``_secret`` is
``secret``), read by its type: ``str``, ``bool``, ``int``, ``float``, a ``Literal`` of strings
(matched regardless of case), ``tuple[str, ...]``, ``Mapping[str, str]``, or another attrs
class (a nested mapping). A field whose metadata says ``{"setting": "duration"}`` or
``{"setting": "size"}`` takes ``90s`` or ``64MiB``. A field without a default is required; a
key written without a value (``null``) keeps the default, as everywhere in the settings.
Fields the class sets itself (``init=False``) are no settings. A class with its own
``from_yaml(section)`` reads itself.
Problems (unknown keys, wrong types, missing values, what the class's validators refuse) are
recorded in the reader's sink, located by file, line and YAML path.
"""

from __future__ import annotations

import collections.abc
import typing
from typing import Any

import attrs

from runnergw.config.reader import MapReader, describe

__all__ = ["check_options_class", "read_options", "setting_key"]

_UNREAD = object()


def setting_key(field_name: str) -> str:
    """The settings key of an options field: ``per_minute`` → ``perMinute``."""
    first, *rest = field_name.split("_")
    return first + "".join(part[:1].upper() + part[1:] for part in rest)


def read_options(cls: type, section: MapReader) -> Any:
    """An instance of ``cls`` from ``section``, or None when a required value is missing or
    a validator refused (the problem is recorded).

    Raises:
        TypeError: ``cls`` (or a class nested in it) has a field of a type settings cannot
            hold, whether or not the section sets it (the filter author's bug).
    """
    reader = getattr(cls, "from_yaml", None)
    if reader is not None:
        return reader(section)
    check_options_class(cls)
    values: dict[str, Any] = {}
    complete = True
    for field in attrs.fields(cls):
        if not field.init:
            continue  # set by the class itself
        key = setting_key(field.alias)
        if section.raw(key) is None:  # absent, or written without a value
            if field.default is attrs.NOTHING:
                section.error(key, "required")
                complete = False
            continue
        value = _read_value(section, key, field.type, field.metadata.get("setting"))
        if value is _UNREAD:
            complete = False
        else:
            values[field.alias] = value
    before = len(section.sink.errors)
    section.finish()
    if not complete or len(section.sink.errors) > before:
        return None
    try:
        return cls(**values)
    except (TypeError, ValueError) as e:
        section.sink.add(section.origin, section.path, str(e))
        return None


def check_options_class(cls: type) -> None:
    """Check that settings can fill every field of ``cls`` and of the classes nested in it.

    Raises:
        TypeError: naming the first field that cannot be read.
    """
    if getattr(cls, "from_yaml", None) is not None:
        return
    attrs.resolve_types(cls)
    for field in attrs.fields(cls):
        if not field.init:
            continue
        kind, setting = field.type, field.metadata.get("setting")
        if isinstance(kind, type) and attrs.has(kind) and setting is None:
            check_options_class(kind)
        elif not _readable(kind, setting):
            raise TypeError(f"{cls.__qualname__}.{field.name}: an options field of type "
                            f"{kind!r} cannot be read from settings")


def _readable(kind: Any, setting: str | None) -> bool:
    """Whether ``_read_typed`` reads a field of this type."""
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    return (setting in ("duration", "size") or kind in (str, bool, int, float)
            or origin is typing.Literal
            or (origin in (tuple, list, collections.abc.Sequence) and arguments[:1] == (str,))
            or (origin in (dict, collections.abc.Mapping) and arguments == (str, str)))


def _read_value(section: MapReader, key: str, kind: Any, setting: str | None) -> Any:
    before = len(section.sink.errors)
    value = _read_typed(section, key, kind, setting)
    return _UNREAD if len(section.sink.errors) > before else value


def _read_typed(section: MapReader, key: str, kind: Any, setting: str | None) -> Any:
    origin, arguments = typing.get_origin(kind), typing.get_args(kind)
    if setting == "duration":
        return section.duration(key, 0.0)
    if setting == "size":
        return section.size(key, 0)
    if kind is str:
        return section.string(key)
    if kind is bool:
        return section.boolean(key, False)
    if kind is int:
        # Bounds are the options class's to set (a validator); settings only check the type.
        return section.integer(key, 0, minimum=-(2**63))
    if kind is float:
        return section.number(key, 0.0, minimum=float("-inf"))
    if origin is typing.Literal:
        return _choice(section, key, arguments)
    if origin in (tuple, list, collections.abc.Sequence) and arguments[:1] == (str,):
        items = section.string_list(key)
        return items if origin is not list else list(items)
    if origin in (dict, collections.abc.Mapping) and arguments == (str, str):
        return section.string_map(key)
    if isinstance(kind, type) and attrs.has(kind):
        return read_options(kind, section.section(key))
    raise TypeError(f"an options field of type {kind!r} cannot be read from settings")


def _choice(section: MapReader, key: str, choices: tuple[Any, ...]) -> Any:
    """One of a ``Literal``'s values, as the class spells it (strings match in any case)."""
    value = section.raw(key)
    for choice in choices:
        if isinstance(choice, str) and isinstance(value, str):
            if choice.lower() == value.lower():
                return choice
        elif type(choice) is type(value) and choice == value:
            return choice
    allowed = ", ".join(str(choice) for choice in choices)
    section.error(key, f"expected one of {allowed}; got {describe(value)}")
    return choices[0]
