"""The hooks a filter may define, and the check that refuses a filter with a misspelt one."""

from __future__ import annotations

import inspect
from typing import Any

import attrs

__all__ = ["FILTER_HOOKS", "FILTER_MEMBERS", "ChainHooks", "FilterClassError", "check_filter"]

FILTER_HOOKS = (
    "request_headers",
    "request_body",
    "response_headers",
    "response_line",
    "response_chunk",
    "response_body",
    "done",
)
"""In the order they can run. See ``IFilter`` for when each one does."""

FILTER_MEMBERS = frozenset({*FILTER_HOOKS, "from_settings", "stop"})
"""Every public method a filter class may define."""


class FilterClassError(ValueError):
    """A filter class defines a public method that is not a hook (a typo such as ``requst``)."""


def _public_methods(cls: type) -> list[str]:
    names = []
    for klass in cls.__mro__:
        if klass is object:
            continue
        for name, value in vars(klass).items():
            if name.startswith("_") or name in names:
                continue
            if isinstance(value, (staticmethod, classmethod)) or inspect.isfunction(value):
                names.append(name)
    return names


def check_filter(candidate: Any) -> None:
    """Refuse a filter whose class defines public methods the chain would never call.

    A misspelt hook (``requst``, ``response_header``) would otherwise be silently skipped,
    and the check it holds never made. Helpers belong in private methods (``_helper``).

    Raises:
        FilterClassError: naming the methods and the hooks there are.
    """
    cls = candidate if isinstance(candidate, type) else type(candidate)
    unknown = [name for name in _public_methods(cls) if name not in FILTER_MEMBERS]
    if unknown:
        listed = ", ".join(f"{name}()" for name in unknown)
        hooks = ", ".join(FILTER_HOOKS)
        raise FilterClassError(
            f"{cls.__module__}.{cls.__qualname__} defines {listed}, which no hook is called; "
            f"the hooks are {hooks} (make helpers private: _name)")


@attrs.frozen
class ChainHooks:
    """A route's filters, sorted by the hooks they define, found once when the route is built.

    Request hooks run in chain order, response hooks and ``done`` in reverse order.
    """

    request_headers: tuple[Any, ...]
    request_body: tuple[Any, ...]
    response_headers: tuple[Any, ...]
    done: tuple[Any, ...]

    @classmethod
    def of(cls, filters: tuple[Any, ...]) -> ChainHooks:
        """Sort ``filters`` by hook (each is checked with ``check_filter`` first)."""
        for step in filters:
            check_filter(step)

        def having(name: str, order: tuple[Any, ...]) -> tuple[Any, ...]:
            return tuple(step for step in order if callable(getattr(step, name, None)))

        backwards = tuple(reversed(filters))
        return cls(
            request_headers=having("request_headers", filters),
            request_body=having("request_body", filters),
            response_headers=having("response_headers", backwards),
            done=having("done", backwards),
        )
