"""Load YAML while remembering the file and line of every key, and lay files over each other."""

from __future__ import annotations

from typing import Any

import yaml

from runnergw.config.errors import ConfigError, Origin

__all__ = ["MarkedMap", "MarkedList", "load_yaml_file", "overlay"]


class MarkedMap(dict):  # type: ignore[type-arg]
    """A YAML mapping that knows where each of its keys was written."""

    origin: Origin
    key_origins: dict[str, Origin]


class MarkedList(list):  # type: ignore[type-arg]
    """A YAML sequence that knows where each of its items was written."""

    origin: Origin
    item_origins: list[Origin]


class _MarkingLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` whose mappings and sequences carry origins."""

    source = "<string>"


def _origin(loader: _MarkingLoader, node: yaml.Node) -> Origin:
    return Origin(loader.source, node.start_mark.line + 1)


def _construct_map(loader: _MarkingLoader, node: yaml.MappingNode) -> MarkedMap:
    result = MarkedMap()
    result.origin = _origin(loader, node)
    result.key_origins = {}
    loader.flatten_mapping(node)
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, str):
            raise ConfigError(_origin(loader, key_node), "", f"keys must be strings, got {key!r}")
        if key in result:
            raise ConfigError(_origin(loader, key_node), key, "duplicate key")
        result[key] = loader.construct_object(value_node, deep=True)
        result.key_origins[key] = _origin(loader, key_node)
    return result


def _construct_list(loader: _MarkingLoader, node: yaml.SequenceNode) -> MarkedList:
    result = MarkedList(loader.construct_object(child, deep=True) for child in node.value)
    result.origin = _origin(loader, node)
    result.item_origins = [_origin(loader, child) for child in node.value]
    return result


_MarkingLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_map)
_MarkingLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_list)


def load_yaml_file(path: str) -> MarkedMap:
    """Read a settings file into a ``MarkedMap``.

    Raises:
        ConfigError: the file cannot be read, is not YAML, or is not a mapping at the top.
    """
    try:
        with open(path, encoding="utf-8") as stream:
            text = stream.read()
    except OSError as e:
        raise ConfigError(Origin(path), "", f"cannot read settings file: {e.strerror}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(Origin(path), "", "settings file is not UTF-8 text") from e

    class Loader(_MarkingLoader):
        source = path

    try:
        data = yaml.load(text, Loader=Loader)  # noqa: S506 - SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(Origin(path, line), "", f"invalid YAML: {e.problem or e}") from e
    except yaml.YAMLError as e:
        raise ConfigError(Origin(path), "", f"invalid YAML: {e}") from e
    if data is None:
        data = MarkedMap()
        data.origin = Origin(path, 1)
        data.key_origins = {}
    if not isinstance(data, MarkedMap):
        raise ConfigError(Origin(path, 1), "", "the settings file must be a mapping of sections")
    return data


def overlay(base: MarkedMap, top: MarkedMap) -> MarkedMap:
    """Lay ``top`` over ``base``: mappings merge key by key, anything else is replaced."""
    merged = MarkedMap(base)
    merged.origin = base.origin
    merged.key_origins = dict(base.key_origins)
    for key, value in top.items():
        old = merged.get(key)
        if isinstance(old, MarkedMap) and isinstance(value, MarkedMap):
            merged[key] = overlay(old, value)
        else:
            merged[key] = value
        merged.key_origins[key] = top.key_origins[key]
    return merged


def set_override(root: MarkedMap, dotted: tuple[str, ...], value: Any, origin: Origin) -> None:
    """Set ``root[a][b]… = value`` for an environment override, creating sections as needed."""
    node = root
    for part in dotted[:-1]:
        child = node.get(part)
        if not isinstance(child, MarkedMap):
            child = MarkedMap()
            child.origin = origin
            child.key_origins = {}
            node[part] = child
            node.key_origins[part] = origin
        node = child
    node[dotted[-1]] = value
    node.key_origins[dotted[-1]] = origin
