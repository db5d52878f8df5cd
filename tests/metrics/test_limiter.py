"""``runnergw_limiter_degraded``: whether each limit is counted in the shared state."""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from runnergw.limits.local import LocalLimitState
from runnergw.metrics.limiter import LimiterCollector

__all__ = ["LimiterCollectorTests"]


class _Parts:
    def __init__(self, state: Any) -> None:
        self.state = state


class _Degradable:
    def __init__(self, away: bool) -> None:
        self.away = away

    def degraded(self) -> dict[str, bool]:
        return {"rateLimit": self.away, "concurrency": self.away, "quota": self.away}


class LimiterCollectorTests(SynchronousTestCase):
    """What Prometheus reads, by the limit state in use."""

    def samples(self, parts: Any) -> dict[str, float] | None:
        families = list(LimiterCollector(lambda: parts).collect())
        if not families:
            return None
        [family] = families
        self.assertEqual(family.name, "runnergw_limiter_degraded")
        return {sample.labels["limit"]: sample.value for sample in family.samples}

    def test_redis_answering(self) -> None:
        """Redis answering: 0 for every limit."""
        self.assertEqual(self.samples(_Parts(_Degradable(False))),
                         {"rateLimit": 0, "concurrency": 0, "quota": 0})

    def test_redis_away(self) -> None:
        """Redis away: 1 for every limit."""
        self.assertEqual(self.samples(_Parts(_Degradable(True))),
                         {"rateLimit": 1, "concurrency": 1, "quota": 1})

    def test_local_limits(self) -> None:
        """Limits in the process, or no roles section: no such metric."""
        self.assertIsNone(self.samples(_Parts(LocalLimitState(None))))  # type: ignore[arg-type]
        self.assertIsNone(self.samples(None))
