"""What a model descriptor says: the command template, the form fields and uploads that fill
it, the outputs it writes, and who may run it within which limits."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs

from runnergw.models.template import command_placeholders

__all__ = ["LIMIT_ATTRIBUTES", "FieldSpec", "ModelDescriptor", "OutputSpec", "RoleLimit"]

LIMIT_ATTRIBUTES = ("duration", "resolution")
"""What a role limit may measure: the duration in seconds or the width in pixels."""

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
