"""The parts the role filters share, with ``limits.backend: redis``."""

from __future__ import annotations

from twisted.internet import reactor
from twisted.internet.defer import Deferred, succeed
from twisted.trial.unittest import TestCase

from runnergw.config.limits_backend import LimitsSettings
from runnergw.config.settings import Settings
from runnergw.limits.parts import LimitParts
from runnergw.limits.redis_degraded import DegradableLimitState
from tests.helpers.redis_limits import redis_settings
from tests.helpers.redis_server import RedisServer

__all__ = ["RedisPartsTests"]


class _Ledger:
    """This node's ledger: today's usage of this node alone."""

    def open(self) -> Deferred[None]:
        return succeed(None)

    def totals_for_day(self, day: str) -> Deferred[dict[str, int]]:
        return succeed({"alice": 500})

    def close(self) -> Deferred[None]:
        return succeed(None)


class RedisPartsTests(TestCase):
    """The state is the cluster's; this node's ledger is its own."""

    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        return self.server.start()

    def parts(self) -> LimitParts:
        settings = Settings(files=("settings.yaml",), roles={"user": None},  # type: ignore
                            limits=LimitsSettings(backend="redis", nodes=2),
                            redis=redis_settings(self.server))
        parts = LimitParts.from_settings(settings, reactor)
        self.addCleanup(parts.stop)
        return parts

    def test_redis_state(self) -> None:
        """``limits.backend: redis`` gives the Redis state with its degraded modes."""
        self.assertIsInstance(self.parts().state, DegradableLimitState)

    async def test_ledger_not_added_to_cluster_totals(self) -> None:
        """Starting a node does not add its own ledger's usage to the day's totals in
        Redis (they already hold it): a restart never counts a day twice."""
        parts = self.parts()
        parts.ledger = _Ledger()  # type: ignore[assignment]
        await parts.state.add_tokens("alice", parts.days.today(), 500)
        await parts.start()
        self.assertEqual(await parts.state.tokens_used("alice", parts.days.today()), 500)
