"""What several gateway processes (``server.workers``) cannot serve: state each process
would keep for itself, so that a limit would hold once per process instead of once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runnergw.config.settings import Settings

__all__ = ["workers_problems"]


def workers_problems(settings: Settings) -> list[tuple[str, str]]:
    """The ``(key, message)`` problems of ``server.workers`` with the rest of ``settings``;
    empty with one worker."""
    if settings.server.workers == 1:
        return []
    problems = []
    if settings.roles and not settings.limits.shared:
        problems.append(("workers", "roles need limits shared between the workers: set "
                                    "limits.backend: redis"))
    if settings.pipelines.enabled:
        problems.append(("workers", "pipelines keep each model's concurrency and queue in "
                                    "one process: serve pipelines with workers: 1"))
    return problems
