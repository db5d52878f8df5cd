"""Redis away: each limit refuses or counts its node's share, as configured; every switch is
logged once, shown by a metric, and undone when Redis answers again."""

from __future__ import annotations

from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import deferLater
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from runnergw.chain.exchange import Reject
from runnergw.config.limits_backend import LimitsSettings
from runnergw.limits.interfaces import TokenLease
from runnergw.limits.redis_degraded import DegradableLimitState
from runnergw.metrics.limiter import LimiterCollector
from tests.helpers.redis_limits import shared_state
from tests.helpers.redis_server import RedisServer

__all__ = ["FailClosedTests", "FailOpenTests", "GiveBackTests", "StopTests", "SwitchTests"]

_ALL_OPEN = (("rateLimit", "open"), ("concurrency", "open"), ("quota", "open"))
_ALL_CLOSED = (("rateLimit", "closed"), ("concurrency", "closed"), ("quota", "closed"))
_DAY = "2026-12-05"


class _Degradable(TestCase):
    timeout = 20
    choices = LimitsSettings().on_redis_error

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        self.events: list[dict[str, Any]] = []
        self.recovered: Deferred[None] = Deferred()
        self.went_away: Deferred[None] = Deferred()
        return self.server.start()

    def degradable(self, timeout: float = 2.0) -> DegradableLimitState:
        settings = LimitsSettings(backend="redis", on_redis_error=self.choices, nodes=2,
                                  redis_timeout=timeout)
        state = DegradableLimitState(shared_state(self, self.server, timeout=timeout),
                                     settings, reactor, self.server.address)
        state.log = Logger(observer=self._observe)
        self.addCleanup(state.stop)
        return state

    def _observe(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        if event.get("event") == "limiter_degraded" and event["limit"] == "quota":
            self.went_away.callback(None)
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


class GiveBackTests(_Degradable):
    """What a request leased and did not use goes back to the store that granted it: Redis
    counts exactly the tokens used of its leases, whichever store answers at the end."""

    choices = _ALL_OPEN

    async def redis_total(self, state: DegradableLimitState, subject: str) -> int:
        """The subject's total in Redis, once every call sent before has been run."""
        await state.shared.add_tokens(subject, _DAY, 0)
        return int(await state.shared.connection.call("HGET", state.shared.day_key(_DAY),
                                                      subject) or 0)

    async def stall(self, state: DegradableLimitState) -> None:
        """Pause Redis and let a rate-limit check (no quota) find it away."""
        self.server.pause()
        await state.take_request("carol", 60, 4)
        self.assertTrue(self.went_away.called)

    async def test_redis_lease_given_back_after_stall(self) -> None:
        """A whole answer leases 5001 tokens in Redis, Redis stalls, the answer ends having
        used 4: once Redis answers again it counts 4, and this node counts none."""
        state = self.degradable(timeout=0.25)
        lease = TokenLease()
        self.assertEqual(await state.lease_tokens("alice", _DAY, 10000, 5001, 2, lease),
                         (5001, 4999))
        await self.stall(state)
        state.settle_lease("alice", _DAY, lease, 4)
        self.assertEqual(state.local.tokens_used("alice", _DAY), 0)
        self.server.resume()
        await self.recovered
        self.assertEqual(await self.redis_total(state, "alice"), 4)

    async def test_give_back_that_finds_redis_stalled(self) -> None:
        """The give-back is the call that finds Redis stalled: Redis runs it when it goes
        on, and it is not sent twice."""
        state = self.degradable(timeout=0.25)
        lease = TokenLease()
        await state.lease_tokens("alice", _DAY, 10000, 5001, 2, lease)
        self.server.pause()
        state.settle_lease("alice", _DAY, lease, 4)
        await self.went_away
        self.server.resume()
        await self.recovered
        self.assertEqual(await self.redis_total(state, "alice"), 4)
        self.assertEqual(state.local.tokens_used("alice", _DAY), 0)

    async def test_local_lease_not_given_back_to_redis(self) -> None:
        """A lease taken on this node while Redis was away, ended after Redis came back:
        its unused tokens go back to this node, and Redis keeps the subject's 3000."""
        state = self.degradable(timeout=0.25)
        await state.shared.add_tokens("alice", _DAY, 3000)
        await self.stall(state)
        lease = TokenLease()
        self.assertEqual(state.lease_tokens("alice", _DAY, 10000, 2001, 2, lease),
                         (2001, 2999))
        self.server.resume()
        await self.recovered
        state.settle_lease("alice", _DAY, lease, 4)
        self.assertEqual(await self.redis_total(state, "alice"), 3000)
        self.assertEqual(state.local.tokens_used("alice", _DAY), 4)

    async def test_stream_leased_from_both(self) -> None:
        """A stream's prompt and first block leased in Redis, a block on this node while
        Redis was away, a last block in Redis: the 30 tokens used are taken in that order,
        so Redis counts 26 and this node 4."""
        state = self.degradable(timeout=0.25)
        lease = TokenLease()
        await state.lease_tokens("alice", _DAY, 1000, 10, 11, lease)
        await state.lease_tokens("alice", _DAY, 1000, 16, lease=lease)
        await self.stall(state)
        self.assertEqual(state.lease_tokens("alice", _DAY, 1000, 16, lease=lease), (16, 484))
        self.server.resume()
        await self.recovered
        await state.lease_tokens("alice", _DAY, 1000, 16, lease=lease)
        state.settle_lease("alice", _DAY, lease, 30)
        self.assertEqual(await self.redis_total(state, "alice"), 26)
        self.assertEqual(state.local.tokens_used("alice", _DAY), 4)

    async def test_used_beyond_lease_while_away(self) -> None:
        """Tokens used beyond a Redis lease while Redis is away are counted on this node,
        not added to Redis when it comes back."""
        state = self.degradable(timeout=0.25)
        lease = TokenLease()
        await state.lease_tokens("alice", _DAY, 1000, 10, 11, lease)
        await self.stall(state)
        state.settle_lease("alice", _DAY, lease, 25)
        self.server.resume()
        await self.recovered
        self.assertEqual(await self.redis_total(state, "alice"), 10)
        self.assertEqual(state.local.tokens_used("alice", _DAY), 15)

    async def test_owed_at_stop_logged(self) -> None:
        """A gateway stopping before Redis returns logs the tokens it could not give back
        (they stay counted in Redis)."""
        state = self.degradable(timeout=0.25)
        lease = TokenLease()
        await state.lease_tokens("alice", _DAY, 1000, 100, 2, lease)
        await self.server.kill()
        await state.take_request("carol", 60, 4)
        state.settle_lease("alice", _DAY, lease, 40)
        state.stop()
        [lost] = [event for event in self.events
                  if event.get("event") == "limiter_give_back_lost"]
        self.assertEqual((lost["tokens"], lost["subjects"]), (60, 1))


class StopTests(_Degradable):
    """The gateway stopping with a give-back just sent."""

    choices = _ALL_OPEN

    async def test_stop_right_after_a_give_back(self) -> None:
        """A lease's rest given back as the gateway stops is sent, and the stop is not
        logged as Redis going away (no ``limiter_degraded``, no probe left running)."""
        state = self.degradable()
        lease = TokenLease()
        await state.lease_tokens("alice", _DAY, 100, 40, 2, lease)
        state.settle_lease("alice", _DAY, lease, 10)
        protocol = state.shared.connection._protocol
        assert protocol is not None
        state.stop()
        await protocol.lost
        await deferLater(reactor, 0, lambda: None)  # the calls under way told of the loss
        self.assertEqual((self.switches("limiter_degraded"), state._probe.running), ([], False))
        reader = shared_state(self, self.server)
        self.assertEqual(int(await reader.connection.call(
            "HGET", state.shared.day_key(_DAY), "alice")), 10)
