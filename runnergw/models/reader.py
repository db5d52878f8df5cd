"""Model descriptors: one JSON file per command-line pipeline, in ``models-enabled/``.

The files are shared with the WebSaaS platform, so keys runnergw does not use (``$schema``,
``formId``, ``actions.stopaction``, ``label``, ``helperText``, ``storage``, ...) are ignored.
Numbers and booleans may be written as strings (``"300"``, ``"false"``), and a null value is
the same as an absent key. Every problem is a :class:`~runnergw.config.errors.ConfigError`, as
a settings problem is: it names the file, the line and column of the value at fault when they
are known, and its JSON path (``fields[2].maxSize``), so the operator can fix them all at once.
"""

from __future__ import annotations

import json
import re
import shlex
from urllib.parse import urlsplit

import attrs

from runnergw.config.errors import ConfigError, Origin
from runnergw.models.fields import read_field
from runnergw.models.located_json import (
    DuplicateKey,
    LocatedArray,
    LocatedObject,
    LocatingDecoder,
    Node,
)
from runnergw.models.template import command_placeholders
from runnergw.models.types import (
    LIMIT_ATTRIBUTES,
    FieldSpec,
    ModelDescriptor,
    OutputSpec,
    RoleLimit,
)
from runnergw.models.values import ValueReader

__all__ = ["Reading", "load_descriptor", "read_descriptor"]

_ROUTE_NAME = re.compile(r"[A-Za-z0-9._-]+")
_FORMAT = re.compile(r"[A-Za-z0-9]{1,10}")


def _read_output(reader: ValueReader, node: Node) -> OutputSpec | None:
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


def _read_list(reader: ValueReader, root: Node, key: str) -> list[Node]:
    """Read a required list member of the root."""
    if root.member(key) is None:
        reader.report_missing(root, key)
        return []
    node = reader.typed(root, key, LocatedArray, "a list")
    return [] if node is None else node.elements()


def _read_limit(reader: ValueReader, node: Node) -> RoleLimit | None:
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


def _read_role_limits(reader: ValueReader, root: Node) -> dict[str, tuple[RoleLimit, ...]]:
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


def _read_roles(reader: ValueReader, root: Node) -> tuple[str, ...] | None:
    """Read ``allowed_roles``; None when the key is absent."""
    node = root.member("allowed_roles")
    if node is None:
        return None
    if not isinstance(node.value, LocatedArray) or not all(isinstance(v, str) for v in node.value):
        reader.report(node, "must be a list of role names")
        return ()
    return tuple(node.value)


def _read_endpoint(reader: ValueReader, root: Node) -> tuple[str | None, int | None]:
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


def _read_command(reader: ValueReader, root: Node) -> str | None:
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
    reader: ValueReader,
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
    reader: ValueReader, root: Node, descriptor: ModelDescriptor, *, ffprobe_available: bool
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
class Reading:
    """What reading one file gave: a descriptor when it has no problem."""

    descriptor: ModelDescriptor | None
    problems: tuple[ConfigError, ...]
    endpoint: str | None = None
    endpoint_origin: Origin | None = None
    """Where ``actions.submit.endpoint`` is written, for problems across files."""


def _decode(reader: ValueReader) -> Node | None:
    """Decode the text as a JSON object, recording a problem when it is not one."""
    text = reader.text
    try:
        value = LocatingDecoder().decode(text)
    except DuplicateKey as e:
        reader.problem("", f'invalid JSON: duplicate key "{e.key}"', e.offset)
        return None
    except json.JSONDecodeError as e:
        hint = " (comments are not allowed in JSON)" if text.startswith(("/*", "//"), e.pos) else ""
        at = Origin(reader.path, e.lineno, e.colno)
        reader.sink.add(at, "", f"invalid JSON: {e.msg}{hint}")
        return None
    except RecursionError:
        reader.problem("", "invalid JSON: nested too deeply")
        return None
    if not isinstance(value, LocatedObject):
        reader.problem("", "must be a JSON object")
        return None
    return Node(value, None, "")


def _read_text(path: str, text: str, *, ffprobe_available: bool) -> Reading:
    """Read a descriptor from its text, collecting every problem."""
    reader = ValueReader(path, text)
    root = _decode(reader)
    if root is None:
        return Reading(None, tuple(reader.problems))
    command = _read_command(reader, root)
    endpoint, endpoint_offset = _read_endpoint(reader, root)
    fields = [(node, read_field(reader, node)) for node in _read_list(reader, root, "fields")]
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
    return Reading(
        descriptor=None if problems else descriptor,
        problems=problems,
        endpoint=endpoint,
        endpoint_origin=reader.origin(endpoint_offset),
    )


def read_descriptor(path: str, *, ffprobe_available: bool) -> Reading:
    """Read a descriptor file, collecting every problem."""
    try:
        with open(path, encoding="utf-8-sig") as stream:
            text = stream.read()
    except UnicodeDecodeError:
        return Reading(None, (ConfigError(Origin(path), "", "is not UTF-8 text"),))
    except OSError as e:
        problem = ConfigError(Origin(path), "", f"cannot be read: {e.strerror or e}")
        return Reading(None, (problem,))
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
        ConfigError: The first problem found in the file.
    """
    reading = read_descriptor(path, ffprobe_available=True)
    if reading.descriptor is None:
        raise reading.problems[0]
    return reading.descriptor
