"""Whether the gateway should be sent new work: the answer ``/readyz`` gives a load balancer."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Readiness"]

ReadinessCheck = Callable[[], list[str]]
"""A part's view: why it cannot take new work (short, nothing sensitive); empty when it can."""


class Readiness:
    """Not ready while starting or draining, or while any registered check names a reason."""

    def __init__(self) -> None:
        self.starting = False
        """Set while the gateway starts: it listens, but a part it needs (the usage ledger)
        is not ready yet, and the service manager has not been told it is."""
        self.draining = False
        """Set when a stop begins: the load balancer must stop sending new work at once."""
        self._checks: list[ReadinessCheck] = []

    def add_check(self, check: ReadinessCheck) -> None:
        """Consult ``check`` on every readiness question."""
        self._checks.append(check)

    def remove_check(self, check: ReadinessCheck) -> None:
        """Stop consulting ``check`` (the part it belongs to was replaced by a reload)."""
        if check in self._checks:
            self._checks.remove(check)

    def reasons(self) -> list[str]:
        """Why the gateway is not ready; empty when it is."""
        reasons = ["starting"] if self.starting else []
        if self.draining:
            reasons.append("draining")
        for check in self._checks:
            reasons.extend(check())
        return reasons
