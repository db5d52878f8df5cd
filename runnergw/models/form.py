"""Check the ``input_form`` of a pipeline request against the model descriptor.

Only declared fields that are not uploads come out: a key of ``input_form`` that names no
field (or names an upload or an output) never reaches the command. Every string that comes
out is refused when it starts with ``-`` (it could be read as an option) or holds a NUL.

Error messages are meant for the client (FastAPI's ``detail``): they name the field and the
rule, never the value that was sent.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runnergw.models.types import FieldSpec, ModelDescriptor

__all__ = ["MAX_TEXT_LENGTH", "FormError", "check_form", "check_value"]

MAX_TEXT_LENGTH = 4096
"""The longest text value accepted, in characters."""

_NUMERIC = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_INTEGER = re.compile(r"[+-]?[0-9]+")
_OPTIONS_SHOWN = 200
"""Options are listed in an error only when their list is at most this long."""


class FormError(Exception):
    """A form value was refused.

    Attributes:
        field: The field at fault, or None when the form as a whole is.
        message: Short text that is safe to send to the client.
    """

    def __init__(self, field: str | None, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message


def _format_number(value: float) -> str:
    """Show a bound without a useless ``.0``."""
    return f"{value:g}"


def _number(field: FieldSpec, value: object) -> int | float:
    """Check a ``number`` or ``inputSlider`` value, converting a numeric string."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FormError(field.id, f"{field.id} must be a number")
    number: int | float
    if isinstance(value, str):
        text = value.strip()
        if len(text) > MAX_TEXT_LENGTH or not _NUMERIC.fullmatch(text):
            raise FormError(field.id, f"{field.id} must be a number")
        number = int(text) if _INTEGER.fullmatch(text) else float(text)
    else:
        number = value
    if isinstance(number, float) and not math.isfinite(number):
        raise FormError(field.id, f"{field.id} must be a finite number")
    if field.minimum is not None and number < field.minimum:
        raise FormError(field.id, f"{field.id} must be at least {_format_number(field.minimum)}")
    if field.maximum is not None and number > field.maximum:
        raise FormError(field.id, f"{field.id} must be at most {_format_number(field.maximum)}")
    return number


def _boolean(field: FieldSpec, value: object) -> bool:
    """Check a boolean value, accepting the strings ``true`` and ``false``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise FormError(field.id, f"{field.id} must be true or false")


def _choice(field: FieldSpec, value: object) -> object:
    """Check a ``select`` value: it must be one of the options, compared as text."""
    options = field.options or ()
    if isinstance(value, (str, int, float)) and len(str(value)) <= MAX_TEXT_LENGTH:
        for option in options:
            if str(option) == str(value):
                return option
    shown = ", ".join(str(option) for option in options)
    if len(shown) <= _OPTIONS_SHOWN:
        raise FormError(field.id, f"{field.id} must be one of: {shown}")
    raise FormError(field.id, f"{field.id} is not one of the allowed options")


def _text(field: FieldSpec, value: object) -> str:
    """Check a text value; a number is turned into its text."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise FormError(field.id, f"{field.id} must be a string")
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TEXT_LENGTH:
        raise FormError(field.id, f"{field.id} must be at most {MAX_TEXT_LENGTH} characters")
    return text


def check_value(field: FieldSpec, value: object) -> object:
    """Check one value against its field and return what the command receives.

    Args:
        field: The declared field (not an upload).
        value: The value sent, or the field's default.

    Returns:
        An int or float for ``number`` and ``inputSlider`` fields, a bool for ``checkbox``,
        ``switch`` and ``boolean`` fields, the option's own value for ``select`` fields and a
        string for any other type.

    Raises:
        FormError: The value does not fit the field, or a string result starts with ``-`` or
            holds a NUL.
    """
    checked: object
    if field.kind == "number":
        checked = _number(field, value)
    elif field.kind == "boolean":
        checked = _boolean(field, value)
    elif field.kind == "select":
        checked = _choice(field, value)
    else:
        checked = _text(field, value)
    if isinstance(checked, str):
        if checked.startswith("-"):
            raise FormError(field.id, f"{field.id} must not start with '-'")
        if "\0" in checked:
            raise FormError(field.id, f"{field.id} must not contain a NUL character")
    return checked


def check_form(
    descriptor: ModelDescriptor, form: Mapping[str, object], uploads: Collection[str]
) -> dict[str, object]:
    """Check a request's ``input_form`` and uploads against the descriptor.

    A field that is absent, null or the empty string is not given: it takes its ``default``
    when it has one; otherwise it is refused when required and left out when not.

    Args:
        descriptor: The model.
        form: The decoded ``input_form`` object: field id to value.
        uploads: The ids of the file parts received.

    Returns:
        The checked values of the declared fields that are not uploads, by field id, for
        :func:`runnergw.models.template.fill_command`.

    Raises:
        FormError: A required field or upload is missing, or a value is refused.
    """
    values: dict[str, object] = {}
    for field in descriptor.fields:
        if field.kind == "upload":
            if field.required and field.id not in uploads:
                raise FormError(field.id, f"{field.id} is required: upload a file")
            continue
        value = form.get(field.id)
        if value is None or value == "":
            value = field.default
        if value is None or value == "":
            if field.required:
                raise FormError(field.id, f"{field.id} is required")
            continue
        values[field.id] = check_value(field, value)
    return values
