"""Turn a model descriptor's ``command`` template into an argv, with the WebSaaS node's rules.

The command is split like a POSIX shell (``shlex``) and never run through a shell. Each token
is then handled from left to right against the argv built so far:

* a token that is exactly one placeholder ``<flag>`` whose input is a boolean: ``True``
  becomes ``--flag`` (``_`` turned into ``-``), ``False`` drops the token;
* a token holding placeholders: each ``<name>`` is replaced by ``str()`` of its own input.
  When every placeholder of the token is missing (absent or None) or empty, the token is
  dropped, and so is the token before it when that one starts with ``-``. When only some
  are, :class:`TemplateError` names the first missing one: a command is never run
  half-filled;
* a bare ``--some-flag`` token (no placeholder) is kept only when the inputs hold
  ``some_flag`` with a value other than ``False`` or None;
* any other token is kept as it is.

The old node filled every placeholder of a token with the value of the first one; runnergw
fills each with its own value. That is the one deliberate difference.
"""

from __future__ import annotations

import functools
import re
import shlex
from collections.abc import Mapping

__all__ = ["TemplateError", "command_placeholders", "fill_command"]

_PLACEHOLDER = re.compile(r"<([A-Za-z0-9_]+)>")


class TemplateError(Exception):
    """A command token can only be partly filled from the inputs.

    Attributes:
        field: The first placeholder of the token that has no value.
        message: Short text that is safe to send to the client.
    """

    def __init__(self, field: str, message: str) -> None:
        super().__init__(field, message)
        self.field = field
        self.message = message

    def __str__(self) -> str:
        return self.message


@functools.lru_cache(maxsize=1024)
def _split(command: str) -> tuple[str, ...]:
    """The tokens of a command template (split once: a descriptor's command never changes)."""
    return tuple(shlex.split(command))


def command_placeholders(command: str) -> list[str]:
    """List the placeholder names of a command template.

    Args:
        command: The template, e.g. ``ffmpeg -i <media> <processedMedia>``.

    Returns:
        Each name once, in order of first appearance (``["media", "processedMedia"]``).

    Raises:
        ValueError: The command cannot be split (an unbalanced quote).
    """
    names: dict[str, None] = {}
    for token in _split(command):
        for name in _PLACEHOLDER.findall(token):
            names.setdefault(name)
    return list(names)


def _is_missing(value: object) -> bool:
    """Tell whether an input counts as not given: absent, None or the empty string."""
    return value is None or value == ""


def _keeps_bare_flag(token: str, inputs: Mapping[str, object]) -> bool:
    """Tell whether a bare ``--some-flag`` token stays: ``some_flag`` is given and not false."""
    key = token[2:].replace("-", "_")
    if key not in inputs:
        return False
    value = inputs[key]
    return value is not None and value is not False


def _fill_token(token: str, names: list[str], inputs: Mapping[str, object]) -> str | None:
    """Fill every placeholder of a token, or return None when none of them has a value."""
    missing = [name for name in dict.fromkeys(names) if _is_missing(inputs.get(name))]
    if len(missing) == len(set(names)):
        return None
    if missing:
        raise TemplateError(
            missing[0],
            f"{missing[0]} is required: it shares a command argument with other given values",
        )
    return _PLACEHOLDER.sub(lambda match: str(inputs[match.group(1)]), token)


def fill_command(command: str, inputs: Mapping[str, object]) -> list[str]:
    """Build the argv of a command template from the inputs.

    Args:
        command: The descriptor's ``command``.
        inputs: Values by placeholder name: the checked form fields, the upload paths and the
            output paths.

    Returns:
        The argv, ready for a process spawn without a shell.

    Raises:
        TemplateError: A token holds several placeholders and only some have a value, or a
            value that is a whole argument starts with ``-`` (a negative number included).
        ValueError: The command cannot be split (an unbalanced quote).
    """
    argv: list[str] = []
    for token in _split(command):
        names = _PLACEHOLDER.findall(token)
        if not names:
            if not token.startswith("--") or _keeps_bare_flag(token, inputs):
                argv.append(token)
            continue
        if _PLACEHOLDER.fullmatch(token) and isinstance(inputs.get(names[0]), bool):
            if inputs[names[0]]:
                argv.append("--" + names[0].replace("_", "-"))
            continue
        filled = _fill_token(token, names, inputs)
        if filled is not None and _PLACEHOLDER.fullmatch(token) and filled.startswith("-"):
            # A value that is a whole argument would be read as an option.
            raise TemplateError(names[0], f"{names[0]} must not start with '-'")
        if filled is not None:
            argv.append(filled)
        elif argv and argv[-1].startswith("-"):
            argv.pop()
    return argv
