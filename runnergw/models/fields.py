"""Reading one entry of a descriptor's ``fields[]``: a form value or a file upload, its bounds,
options, size and media types, and a default checked the way form values are."""

from __future__ import annotations

from typing import Any

from runnergw.models.form import FormError, check_value
from runnergw.models.located_json import LocatedArray, LocatedObject, Node
from runnergw.models.types import FieldSpec
from runnergw.models.values import ValueReader

__all__ = ["read_field"]

_MEGABYTE = 1024 * 1024


def _options(reader: ValueReader, parent: Node) -> tuple[Any, ...] | None:
    """Read ``options``: objects with a ``value``, or the values themselves."""
    node = reader.typed(parent, "options", LocatedArray, "a list")
    if node is None:
        return None
    values: list[Any] = []
    for element in node.elements():
        is_object = isinstance(element.value, LocatedObject)
        value_node = element.member("value") if is_object else element
        if value_node is None:
            reader.report(element, "an option needs a value")
        elif isinstance(value_node.value, (str, int, float)):
            values.append(value_node.value)
        else:
            reader.report(value_node, "an option value must be a string, number or boolean")
    return tuple(values)


def _max_size(reader: ValueReader, parent: Node) -> int | None:
    """Read ``maxSize`` (MB, possibly fractional) as bytes."""
    megabytes = reader.number(parent, "maxSize")
    if megabytes is None:
        return None
    size = int(megabytes * _MEGABYTE)
    if size < 1:
        node = parent.member("maxSize")
        if node is not None:
            reader.report(node, "must be a positive size in MB")
        return None
    return size


def _accepted_types(reader: ValueReader, parent: Node) -> tuple[str, ...]:
    """Read ``acceptedFileTypes``: a list of media types, or a single one."""
    node = parent.member("acceptedFileTypes")
    if node is None:
        return ()
    if isinstance(node.value, str):
        return (node.value,)
    if not isinstance(node.value, LocatedArray) or not all(isinstance(v, str) for v in node.value):
        reader.report(node, "must be a list of media types")
        return ()
    return tuple(node.value)


def _check_defaults(reader: ValueReader, node: Node, field: FieldSpec) -> None:
    """Check a field's default and options the way form values are checked."""
    if field.kind == "upload":
        return
    if field.kind == "select":
        options = node.member("options")
        if options is None:
            reader.report(node, "a select field needs options")
        elif isinstance(options.value, LocatedArray):
            for element in options.elements():
                is_object = isinstance(element.value, LocatedObject)
                value = element.member("value") if is_object else element
                if value is not None and isinstance(value.value, (str, int, float)):
                    _check_value(reader, value, field, value.value)
    default = node.member("default")
    if default is not None and default.value != "":
        _check_value(reader, default, field, default.value)


def _check_value(reader: ValueReader, node: Node, field: FieldSpec, value: Any) -> None:
    """Report a value the form checks would refuse."""
    try:
        check_value(field, value)
    except FormError as e:
        reader.report(node, f"not a valid value: {e.message}")


def read_field(reader: ValueReader, node: Node) -> FieldSpec | None:
    """Read one entry of ``fields[]``; None when it cannot be used."""
    if not isinstance(node.value, LocatedObject):
        reader.report(node, "must be an object")
        return None
    field_id = reader.identifier(node, "id")
    field_type = reader.string(node, "type", required=True)
    minimum = reader.number(node, "min")
    maximum = reader.number(node, "max")
    if minimum is not None and maximum is not None and minimum > maximum:
        max_node = node.member("max")
        if max_node is not None:
            reader.report(max_node, "must not be below min")
    default_node = node.member("default")
    field = FieldSpec(
        id=field_id or "",
        type=field_type or "",
        required=reader.boolean(node, "required", False),
        default=None if default_node is None else default_node.value,
        minimum=minimum,
        maximum=maximum,
        options=_options(reader, node),
        max_size=_max_size(reader, node),
        accepted_types=_accepted_types(reader, node),
    )
    if field_id is None or field_type is None:
        return None
    _check_defaults(reader, node, field)
    return field
