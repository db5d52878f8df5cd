"""Model descriptors: one JSON file per command-line pipeline, in ``models-enabled/``.

The files are shared with the WebSaaS platform, so keys runnergw does not use (``$schema``,
``formId``, ``actions.stopaction``, ``label``, ``helperText``, ``storage``, ...) are ignored.
Numbers and booleans may be written as strings (``"300"``, ``"false"``), and a null value is
the same as an absent key. Every problem names the file and, when it is known, the line and
column of the value at fault, so that the operator can fix them all at once.
"""

from __future__ import annotations

import json
import math
import os
import re
import shlex
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

import attrs

from runnergw.pipelines.form import FormError, check_value
from runnergw.pipelines.located_json import (
    DuplicateKey,
    LocatedArray,
    LocatedObject,
    LocatingDecoder,
    Node,
    join_path,
)
from runnergw.pipelines.template import command_placeholders

__all__ = [
    "LIMIT_ATTRIBUTES",
    "DescriptorError",
    "FieldSpec",
    "ModelDescriptor",
    "OutputSpec",
    "RoleLimit",
    "load_descriptor",
    "load_models",
]

LIMIT_ATTRIBUTES = ("duration", "resolution")
"""What a role limit may measure: the duration in seconds or the width in pixels."""

_MEGABYTE = 1024 * 1024
_ROUTE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_IDENTIFIER = re.compile(r"[A-Za-z0-9_-]+")
_FORMAT = re.compile(r"[A-Za-z0-9]{1,10}")
_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_KINDS: Mapping[str, str] = MappingProxyType({
    "fileUpload": "upload",
    "number": "number",
    "inputSlider": "number",
    "checkbox": "boolean",
    "switch": "boolean",
    "boolean": "boolean",
    "select": "select",
})
"""Field types by the way their values are checked; any other type is text."""


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


def _optional_tuple(value: Any) -> tuple[Any, ...] | None:
    """Turn a sequence into a tuple, keeping None."""
    return None if value is None else tuple(value)


def _frozen_limits(value: Mapping[str, Any]) -> Mapping[str, tuple[RoleLimit, ...]]:
    """Copy role limits into a read-only mapping of tuples."""
    return MappingProxyType({role: tuple(limits) for role, limits in value.items()})


@attrs.frozen
class FieldSpec:
    """One entry of ``fields[]``: a form value or a file upload."""

    id: str
    type: str
    """``fileUpload``, ``number``, ``inputSlider``, ``select``, ``text``, ``colorPicker``, ..."""
    required: bool = False
    default: Any = None
    """The value used when the form does not give one; None for no default."""
    minimum: float | None = None
    maximum: float | None = None
    options: tuple[Any, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    """The option values of a ``select`` field."""
    max_size: int | None = None
    """The largest upload, in bytes (``maxSize`` is in MB of 1024 * 1024 bytes)."""
    accepted_types: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    """Media types of an upload, as ``audio/*`` or ``text/plain``."""

    @property
    def kind(self) -> str:
        """How values are checked: ``upload``, ``number``, ``boolean``, ``select`` or ``text``."""
        return _KINDS.get(self.type, "text")


@attrs.frozen
class OutputSpec:
    """One entry of ``output[]``: a file the command writes, at a fresh ``<uuid>.<format>``."""

    id: str
    type: str
    """``audio``, ``video``, ``image``, ..."""
    format: str
    """The file name extension, as ``mp3`` (letters and digits, at most 10)."""


@attrs.frozen
class RoleLimit:
    """A limit on the main input for one role."""

    attribute: str
    """``duration`` or ``resolution``."""
    value: float
    """Seconds for a duration, width in pixels for a resolution."""


@attrs.frozen(kw_only=True)
class ModelDescriptor:
    """A model served on ``POST /<endpoint>/``: its command template and what fills it."""

    path: str
    """The file the descriptor was read from."""
    endpoint: str
    """The route name: the last path segment of ``actions.submit.endpoint``."""
    title: str = ""
    command: str
    """The argv template, split like a POSIX shell command."""
    fields: tuple[FieldSpec, ...] = attrs.field(default=(), converter=tuple)
    outputs: tuple[OutputSpec, ...] = attrs.field(default=(), converter=tuple)
    main_input_id: str | None = None
    """The upload that role limits measure."""
    allowed_roles: tuple[str, ...] | None = attrs.field(default=None, converter=_optional_tuple)
    """The roles allowed to call the model; None (the key is absent) allows any role."""
    role_limits: Mapping[str, tuple[RoleLimit, ...]] = attrs.field(
        factory=dict, converter=_frozen_limits
    )
    """Limits on the main input by role (read-only)."""

    def field(self, field_id: str) -> FieldSpec | None:
        """Return the field with this id, or None."""
        for field in self.fields:
            if field.id == field_id:
                return field
        return None

    @property
    def upload_fields(self) -> tuple[FieldSpec, ...]:
        """The ``fileUpload`` fields, in order."""
        return tuple(field for field in self.fields if field.kind == "upload")

    @property
    def placeholders(self) -> tuple[str, ...]:
        """Every ``<name>`` of the command, once each, in order of first appearance."""
        return tuple(command_placeholders(self.command))


class _Reader:
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


def _options(reader: _Reader, parent: Node) -> tuple[Any, ...] | None:
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


def _max_size(reader: _Reader, parent: Node) -> int | None:
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


def _accepted_types(reader: _Reader, parent: Node) -> tuple[str, ...]:
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


def _check_defaults(reader: _Reader, node: Node, field: FieldSpec) -> None:
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


def _check_value(reader: _Reader, node: Node, field: FieldSpec, value: Any) -> None:
    """Report a value the form checks would refuse."""
    try:
        check_value(field, value)
    except FormError as e:
        reader.report(node, f"not a valid value: {e.message}")


def _read_field(reader: _Reader, node: Node) -> FieldSpec | None:
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


def _read_output(reader: _Reader, node: Node) -> OutputSpec | None:
    """Read one entry of ``output[]``; None when it cannot be used."""
    if not isinstance(node.value, LocatedObject):
        reader.report(node, "must be an object")
        return None
    output_id = reader.identifier(node, "id")
    output_type = reader.string(node, "type") or ""
    output_format = reader.string(node, "format", required=True)
    format_node = node.member("format")
    if output_format is not None and format_node is not None:
        if not _FORMAT.fullmatch(output_format):
            reader.report(format_node, "must be 1 to 10 letters or digits, as mp3")
            output_format = None
    if output_id is None or output_format is None:
        return None
    return OutputSpec(id=output_id, type=output_type, format=output_format)


def _read_list(reader: _Reader, root: Node, key: str) -> list[Node]:
    """Read a required list member of the root."""
    if root.member(key) is None:
        reader.report_missing(root, key)
        return []
    node = reader.typed(root, key, LocatedArray, "a list")
    return [] if node is None else node.elements()


def _read_limit(reader: _Reader, node: Node) -> RoleLimit | None:
    """Read one role limit: ``{type: "media", attribute, value}``."""
    if not isinstance(node.value, LocatedObject):
        reader.report(node, "must be an object")
        return None
    limit_type = reader.string(node, "type")
    type_node = node.member("type")
    if limit_type is not None and limit_type != "media" and type_node is not None:
        reader.report(type_node, f'"{limit_type}" limits are not supported (only "media")')
    attribute = reader.string(node, "attribute", required=True)
    attribute_node = node.member("attribute")
    if attribute is not None and attribute not in LIMIT_ATTRIBUTES and attribute_node is not None:
        reader.report(
            attribute_node,
            f'"{attribute}" is not a known attribute ({" or ".join(LIMIT_ATTRIBUTES)})',
        )
        attribute = None
    if node.member("value") is None:
        reader.report_missing(node, "value")
    value = reader.number(node, "value")
    value_node = node.member("value")
    if value is not None and value <= 0 and value_node is not None:
        reader.report(value_node, "must be positive")
        value = None
    if attribute is None or value is None:
        return None
    return RoleLimit(attribute=attribute, value=value)


def _read_role_limits(reader: _Reader, root: Node) -> dict[str, tuple[RoleLimit, ...]]:
    """Read ``role_limits``: role name to a list of limits."""
    node = reader.typed(root, "role_limits", LocatedObject, "an object of role names to lists")
    if node is None:
        return {}
    limits: dict[str, tuple[RoleLimit, ...]] = {}
    for role in node.value:
        role_node = reader.typed(node, role, LocatedArray, "a list of limits")
        if role_node is not None:
            read = (_read_limit(reader, element) for element in role_node.elements())
            limits[role] = tuple(limit for limit in read if limit is not None)
    return limits


def _read_roles(reader: _Reader, root: Node) -> tuple[str, ...] | None:
    """Read ``allowed_roles``; None when the key is absent."""
    node = root.member("allowed_roles")
    if node is None:
        return None
    if not isinstance(node.value, LocatedArray) or not all(isinstance(v, str) for v in node.value):
        reader.report(node, "must be a list of role names")
        return ()
    return tuple(node.value)


def _read_endpoint(reader: _Reader, root: Node) -> tuple[str | None, int | None]:
    """Read the route name from ``actions.submit.endpoint``, with its offset."""
    parent = root
    for key, missing in (("actions", "actions.submit.endpoint"), ("submit", "submit.endpoint")):
        node = parent.member(key)
        if node is None:
            reader.report_missing(parent, missing)
            return None, None
        if not isinstance(node.value, LocatedObject):
            reader.report(node, "must be an object")
            return None, None
        parent = node
    url = reader.string(parent, "endpoint", required=True)
    node = parent.member("endpoint")
    if url is None or node is None:
        return None, None
    try:
        segments = [segment for segment in urlsplit(url).path.split("/") if segment]
    except ValueError:
        segments = []
    if not segments:
        reader.report(node, "has no path segment to name the route, as /process-audio/")
        return None, node.offset
    name = segments[-1]
    if not _ROUTE_NAME.fullmatch(name) or name in (".", ".."):
        reader.report(
            node, f'the route name "{name}" must use only letters, digits, ".", "_" and "-"'
        )
        return None, node.offset
    return name, node.offset


def _read_command(reader: _Reader, root: Node) -> str | None:
    """Read ``command`` and check that it splits and that its program is fixed."""
    command = reader.string(root, "command", required=True)
    node = root.member("command")
    if command is None or node is None:
        return None
    try:
        words = shlex.split(command)
    except ValueError as e:
        reader.report(node, f"cannot be split like a shell command: {e}")
        return None
    if not words:
        reader.report(node, "holds no program to run")
        return None
    if command_placeholders(shlex.join(words[:1])):
        reader.report(node, "the program (the first word) must not hold a placeholder")
        return None
    return command


def _check_ids(
    reader: _Reader,
    field_nodes: list[tuple[Node, FieldSpec]],
    output_nodes: list[tuple[Node, OutputSpec]],
) -> None:
    """Refuse repeated field ids, repeated output ids and outputs named like fields."""
    seen: dict[str, str] = {}
    for node, spec in [*field_nodes, *output_nodes]:
        id_node = node.member("id") or node
        if spec.id in seen:
            reader.report(id_node, f'"{spec.id}" is already the id of {seen[spec.id]}')
        else:
            seen[spec.id] = node.where


def _check_references(
    reader: _Reader, root: Node, descriptor: ModelDescriptor, *, ffprobe_available: bool
) -> None:
    """Check what refers to fields and outputs: placeholders, main input and role limits."""
    known = {field.id for field in descriptor.fields} | {out.id for out in descriptor.outputs}
    command_node = root.member("command") or root
    for name in descriptor.placeholders:
        if name not in known:
            reader.report(command_node, f"<{name}> matches no field or output id")
    main_node = root.member("main_input_id")
    uploads = {field.id for field in descriptor.upload_fields}
    main_input_id = descriptor.main_input_id
    if main_node is not None and main_input_id is not None and main_input_id not in uploads:
        reader.report(main_node, f'"{descriptor.main_input_id}" is not a fileUpload field')
    limits_node = root.member("role_limits")
    if limits_node is None or not any(descriptor.role_limits.values()):
        return
    if descriptor.main_input_id is None:
        reader.report(limits_node, "role limits need main_input_id, the upload they measure")
    if not ffprobe_available:
        reader.report(limits_node, "role limits need ffprobe, which is not installed")


@attrs.frozen
class _Reading:
    """What reading one file gave: a descriptor when it has no problem."""

    descriptor: ModelDescriptor | None
    problems: tuple[DescriptorError, ...]
    endpoint: str | None = None
    endpoint_at: tuple[int | None, int | None] = (None, None)
    """The line and column of ``actions.submit.endpoint``, for problems across files."""


def _decode(reader: _Reader) -> Node | None:
    """Decode the text as a JSON object, recording a problem when it is not one."""
    text = reader.text
    try:
        value = LocatingDecoder().decode(text)
    except DuplicateKey as e:
        reader.problems.append(reader.error(f'invalid JSON: duplicate key "{e.key}"', e.offset))
        return None
    except json.JSONDecodeError as e:
        hint = " (comments are not allowed in JSON)" if text.startswith(("/*", "//"), e.pos) else ""
        reader.problems.append(
            DescriptorError(reader.path, f"invalid JSON: {e.msg}{hint}", line=e.lineno,
                            column=e.colno)
        )
        return None
    except RecursionError:
        reader.problems.append(DescriptorError(reader.path, "invalid JSON: nested too deeply"))
        return None
    if not isinstance(value, LocatedObject):
        reader.problems.append(DescriptorError(reader.path, "must be a JSON object"))
        return None
    return Node(value, None, "")


def _read_text(path: str, text: str, *, ffprobe_available: bool) -> _Reading:
    """Read a descriptor from its text, collecting every problem."""
    reader = _Reader(path, text)
    root = _decode(reader)
    if root is None:
        return _Reading(None, tuple(reader.problems))
    command = _read_command(reader, root)
    endpoint, endpoint_offset = _read_endpoint(reader, root)
    fields = [(node, _read_field(reader, node)) for node in _read_list(reader, root, "fields")]
    outputs = [(node, _read_output(reader, node)) for node in _read_list(reader, root, "output")]
    field_nodes = [(node, spec) for node, spec in fields if spec is not None]
    output_nodes = [(node, spec) for node, spec in outputs if spec is not None]
    _check_ids(reader, field_nodes, output_nodes)
    descriptor = ModelDescriptor(
        path=path,
        endpoint=endpoint or "",
        title=reader.string(root, "title") or "",
        command=command or "",
        fields=tuple(spec for _, spec in field_nodes),
        outputs=tuple(spec for _, spec in output_nodes),
        main_input_id=reader.string(root, "main_input_id"),
        allowed_roles=_read_roles(reader, root),
        role_limits=_read_role_limits(reader, root),
    )
    _check_references(reader, root, descriptor, ffprobe_available=ffprobe_available)
    problems = tuple(reader.problems)
    return _Reading(
        descriptor=None if problems else descriptor,
        problems=problems,
        endpoint=endpoint,
        endpoint_at=reader.locate(endpoint_offset),
    )


def _read_file(path: str, *, ffprobe_available: bool) -> _Reading:
    """Read a descriptor file, collecting every problem."""
    try:
        with open(path, encoding="utf-8-sig") as stream:
            text = stream.read()
    except UnicodeDecodeError:
        return _Reading(None, (DescriptorError(path, "is not UTF-8 text"),))
    except OSError as e:
        return _Reading(None, (DescriptorError(path, f"cannot be read: {e.strerror or e}"),))
    return _read_text(path, text, ffprobe_available=ffprobe_available)


def load_descriptor(path: str) -> ModelDescriptor:
    """Read and check one model descriptor.

    ffprobe is assumed to be available: :func:`load_models` checks that role limits can be
    measured.

    Args:
        path: The JSON file.

    Returns:
        The descriptor.

    Raises:
        DescriptorError: The first problem found in the file.
    """
    reading = _read_file(path, ffprobe_available=True)
    if reading.descriptor is None:
        raise reading.problems[0]
    return reading.descriptor


def load_models(
    directory: str, *, ffprobe_available: bool
) -> tuple[list[ModelDescriptor], list[DescriptorError]]:
    """Read every ``*.json`` descriptor of a directory, in name order.

    Files named ``*.json.example``, hidden files and subdirectories are skipped. A file with
    any problem is left out, and so is a file whose endpoint an earlier file already names.

    Args:
        directory: The ``models-enabled`` directory.
        ffprobe_available: Whether ffprobe can measure media; without it, descriptors with
            role limits are refused.

    Returns:
        The good descriptors, and every problem found (an unreadable directory is one).
    """
    try:
        names = sorted(os.listdir(directory))
    except OSError as e:
        return [], [DescriptorError(directory, f"cannot list the models: {e.strerror or e}")]
    models: list[ModelDescriptor] = []
    problems: list[DescriptorError] = []
    owners: dict[str, str] = {}
    for name in names:
        path = os.path.join(directory, name)
        if not name.endswith(".json") or name.startswith(".") or not os.path.isfile(path):
            continue
        reading = _read_file(path, ffprobe_available=ffprobe_available)
        found = list(reading.problems)
        if reading.endpoint is not None:
            if reading.endpoint in owners:
                line, column = reading.endpoint_at
                found.append(DescriptorError(
                    path,
                    f'actions.submit.endpoint: "{reading.endpoint}" is already the endpoint of '
                    f"{owners[reading.endpoint]}",
                    line=line,
                    column=column,
                ))
            else:
                owners[reading.endpoint] = path
        problems.extend(found)
        if reading.descriptor is not None and not found:
            models.append(reading.descriptor)
    return models, problems
