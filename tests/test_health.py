"""Readiness: draining and the parts' own reasons."""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from runnergw.health import Readiness

__all__ = ["ReadinessTests"]


class ReadinessTests(SynchronousTestCase):
    """What ``/readyz`` is told."""

    def test_ready_by_default(self) -> None:
        """A gateway with no reasons is ready."""
        self.assertEqual(Readiness().reasons(), [])

    def test_draining_and_checks(self) -> None:
        """Draining and every check's reasons are listed; a removed check is not asked."""
        readiness = Readiness()

        def pool() -> list[str]:
            return ["runner ollama: no healthy host"]
        readiness.add_check(pool)
        readiness.draining = True
        self.assertEqual(readiness.reasons(), ["draining", "runner ollama: no healthy host"])
        readiness.remove_check(pool)
        self.assertEqual(readiness.reasons(), ["draining"])

    def test_starting(self) -> None:
        """A gateway still starting (listening, its ledger not open yet) is not ready."""
        readiness = Readiness()
        readiness.starting = True
        self.assertEqual(readiness.reasons(), ["starting"])
        readiness.starting = False
        self.assertEqual(readiness.reasons(), [])

