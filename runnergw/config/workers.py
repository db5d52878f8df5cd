"""What several gateway processes (``server.workers``) cannot serve: state each process
would keep for itself, so that a limit would hold once per process instead of once."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from runnergw.config.settings import Settings

__all__ = ["nodes_problems", "workers_problems"]


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


def nodes_problems(settings: Settings) -> list[tuple[str, str]]:
    """The ``(key, message)`` problems of ``limits.nodes`` with ``server.workers``: a worker
    failing open counts its own share, so ``nodes`` must count every process."""
    limits = settings.limits
    workers = settings.server.workers
    if not limits.shared or not limits.fails_open or not limits.nodes or limits.nodes >= workers:
        return []
    return [("nodes", f"{limits.nodes} is less than server.workers ({workers}): while Redis "
                      f"is away each worker counts {', '.join(limits.fails_open)} with its own "
                      "share, so limits.nodes counts every gateway process (the nodes times "
                      "their workers)")]
