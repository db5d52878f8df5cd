"""Redis away: each limit refuses or counts its node's share, as configured; every switch is
logged once, shown by a metric, and undone when Redis answers again."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from runnergw.chain.exchange import Reject
from runnergw.config.limits_backend import LimitsSettings
from runnergw.limits.redis_degraded import DegradableLimitState
from runnergw.metrics.limiter import LimiterCollector
from tests.helpers.redis_limits import shared_state
from tests.helpers.redis_server import RedisServer

__all__ = ["FailClosedTests", "FailOpenTests", "SwitchTests"]

_ALL_OPEN = (("rateLimit", "open"), ("concurrency", "open"), ("quota", "open"))
_ALL_CLOSED = (("rateLimit", "closed"), ("concurrency", "closed"), ("quota", "closed"))


class _Degradable(TestCase):
    timeout = 20
    choices = LimitsSettings().on_redis_error

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        self.events: list[dict[str, Any]] = []
        self.recovered: Deferred[None] = Deferred()
        return self.server.start()

    def degradable(self) -> DegradableLimitState:
        settings = LimitsSettings(backend="redis", on_redis_error=self.choices, nodes=2,
                                  redis_timeout=1.0)
        state = DegradableLimitState(shared_state(self, self.server), settings, reactor,
                                     self.server.address)
        state.log = Logger(observer=self._observe)
        self.addCleanup(state.stop)
        return state

    def _observe(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event.get("event") == "limiter_recovered" and event["limit"] == "quota":
            # The last limit logged.
            self.recovered.callback(None)

    def switches(self, key: str) -> list[str]:
        return [event["limit"] for event in self.events if event.get("event") == key]


class FailClosedTests(_Degradable):
    """``closed``: requests are refused with 503 and ``Retry-After`` while Redis is away."""

    choices = _ALL_CLOSED

    async def test_quota_refused(self) -> None:
        """A quota check while Redis is down is a 503 with ``Retry-After``."""
        state = self.degradable()
        await self.server.kill()
        refusal = await self.assertFailure(state.lease_tokens("alice", "2026-12-05", 100, 10),
                                           Reject)
        self.assertEqual(refusal.status, 503)
        self.assertEqual(dict(refusal.headers)["Retry-After"], "2")

    async def test_refused_at_once_while_away(self) -> None:
        """Once Redis is known away, later checks are refused without waiting for it."""
        state = self.degradable()
        await self.server.kill()
        await self.assertFailure(state.take_request("alice", 60, 5), Reject)
        with self.assertRaises(Reject):
            state.acquire_slot("alice", 1, 0)


class FailOpenTests(_Degradable):
    """``open``: limits are counted on this node, each divided by ``nodes``."""

    choices = _ALL_OPEN

    async def test_rate_limit_share(self) -> None:
        """A burst of 4 on 2 nodes allows 2 on this node while Redis is away."""
        state = self.degradable()
        await self.server.kill()
        first = await state.take_request("alice", 60, 4)
        allowed = [first.allowed] + [state.take_request("alice", 60, 4).allowed
                                     for _ in range(3)]
        self.assertEqual(allowed, [True, True, False, False])

    async def test_concurrency_share(self) -> None:
        """A cap of 4 on 2 nodes holds 2 places on this node while Redis is away."""
        state = self.degradable()
        await self.server.kill()
        first = await state.acquire_slot("alice", 4, 0)
        self.assertIsNotNone(first)
        self.assertIsNotNone(state.acquire_slot("alice", 4, 0))
        self.assertIsNone(state.acquire_slot("alice", 4, 0))

    async def test_quota_share(self) -> None:
        """A daily quota of 100 on 2 nodes leases at most 50 on this node."""
        state = self.degradable()
        await self.server.kill()
        self.assertEqual(await state.lease_tokens("alice", "2026-12-05", 100, 80), (50, 0))


class SwitchTests(_Degradable):
    """Every switch is logged once, shown by the metric, and undone without a restart."""

    choices = _ALL_OPEN

    async def test_logged_once(self) -> None:
        """Many checks while Redis is away log one switch per limit."""
        state = self.degradable()
        await self.server.kill()
        await state.take_request("alice", 60, 4)
        for _ in range(5):
            state.take_request("alice", 60, 4)
            state.lease_tokens("alice", "2026-12-05", 100, 1)
        self.assertEqual(sorted(self.switches("limiter_degraded")),
                         ["concurrency", "quota", "rateLimit"])

    async def test_metric(self) -> None:
        """``runnergw_limiter_degraded`` is 0 for each limit, 1 while Redis is away."""
        state = self.degradable()
        parts = type("Parts", (), {"state": state})()
        collector = LimiterCollector(lambda: parts)

        def values() -> dict[str, float]:
            [family] = collector.collect()
            return {sample.labels["limit"]: sample.value for sample in family.samples}

        await state.take_request("alice", 60, 4)
        self.assertEqual(values(), {"rateLimit": 0, "concurrency": 0, "quota": 0})
        await self.server.kill()
        await state.take_request("alice", 60, 4)
        self.assertEqual(values(), {"rateLimit": 1, "concurrency": 1, "quota": 1})

    async def test_recovery(self) -> None:
        """Redis back on its port: the limits are counted in Redis again, logged once."""
        state = self.degradable()
        await self.server.kill()
        await state.take_request("alice", 60, 4)
        await self.server.start()
        await self.recovered
        self.assertEqual(sorted(self.switches("limiter_recovered")),
                         ["concurrency", "quota", "rateLimit"])
        await state.take_request("alice", 60, 4)
        remaining = await state.shared.connection.call(
            "HGET", state.shared.key("rate", "alice"), "a")
        self.assertEqual(float(remaining), 3.0)
