"""The ``usage`` filter on the Redis limit state while Redis stalls: what a request leased
and did not use goes back to the store that granted it, so Redis' day totals count exactly
the tokens used of its own leases."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.trial.unittest import TestCase

from runnergw.chain.exchange import Exchange, Identity
from runnergw.config.limits_backend import LimitsSettings
from runnergw.config.roles import RoleSettings
from runnergw.filters.access import AccessFilter
from runnergw.filters.role import RoleFilter
from runnergw.filters.usage import UsageFilter
from runnergw.limits.days import QuotaDays
from runnergw.limits.parts import LimitParts
from runnergw.limits.redis_degraded import DegradableLimitState
from runnergw.testing import Answer, FilterRun, make_exchange, run_filters
from tests.helpers.redis_limits import shared_state
from tests.helpers.redis_server import RedisServer

__all__ = ["GiveBackThroughFilterTests"]

_MODEL = "llama3.2"
_ANSWER = {"model": _MODEL, "created_at": "2026-12-05T22:00:00Z", "response": "a b c",
           "done": True, "done_reason": "stop", "prompt_eval_count": 1, "eval_count": 3}
"""A whole answer that used 4 tokens."""


class _Hold:
    """A filter after ``usage``: the request waits here, once admitted, until the test lets
    it go on."""

    name = "hold"

    def __init__(self) -> None:
        self.reached: Deferred[None] = Deferred()
        self.release: Deferred[None] = Deferred()

    def request_body(self, exchange: Exchange) -> Deferred[None]:
        self.reached.callback(None)
        return self.release


class GiveBackThroughFilterTests(TestCase):
    """Whole answers under a daily quota of 10000, failing open on 2 nodes, while the
    test's own redis-server is paused and continued."""

    timeout = 20

    def setUp(self) -> Deferred[None]:
        self.server = RedisServer(self)
        self.recovered: Deferred[None] = Deferred()
        return self.server.start()

    def parts(self) -> LimitParts:
        settings = LimitsSettings(backend="redis", nodes=2, redis_timeout=0.25,
                                  on_redis_error=(("rateLimit", "open"),
                                                  ("concurrency", "open"), ("quota", "open")))
        state = DegradableLimitState(shared_state(self, self.server, timeout=0.25), settings,
                                     reactor, self.server.address)
        state.log = Logger(observer=self._observe)
        self.addCleanup(state.stop)
        self.state = state
        return LimitParts(state, QuotaDays(ZoneInfo("UTC"), reactor), None)

    def _observe(self, event: dict[str, Any]) -> None:
        if event.get("event") == "limiter_recovered" and event["limit"] == "quota":
            self.recovered.callback(None)

    def start(self, parts: LimitParts, hold: _Hold, cap: int) -> Deferred[FilterRun]:
        """A whole answer of ``cap`` tokens at most, asked for as alice."""
        body = {"model": _MODEL, "prompt": "hi", "stream": False,
                "options": {"num_predict": cap}}
        exchange = make_exchange("POST", "/api/generate", body=json.dumps(body).encode())
        exchange.identity = Identity(subject="alice", role=None, claims={},
                                     token_kind="v4.public")
        roles = {"user": RoleSettings("user", tokens_per_day=10000)}
        filters = [RoleFilter(None, roles, "user"), AccessFilter(roles, 1 << 20),
                   UsageFilter(parts, 1 << 20), hold]
        return run_filters(filters, exchange, Answer.json(_ANSWER))

    async def stall(self) -> None:
        """Pause Redis; a rate-limit check (no quota) finds it away."""
        self.server.pause()
        await self.state.take_request("carol", 60, 4)

    async def redis_total(self, day: str) -> int:
        """alice's total in Redis, once every call sent before has been run."""
        await self.state.shared.add_tokens("alice", day, 0)
        return int(await self.state.shared.connection.call(
            "HGET", self.state.shared.day_key(day), "alice") or 0)

    async def test_redis_lease_ends_while_redis_stalls(self) -> None:
        """5001 tokens leased in Redis, Redis stalls, the answer ends having used 4: Redis
        counts 4 once it goes on, not 5001."""
        parts = self.parts()
        day = parts.days.today()
        hold = _Hold()
        run = self.start(parts, hold, 5000)
        await hold.reached
        self.assertEqual(await self.redis_total(day), 5001)
        await self.stall()
        hold.release.callback(None)
        await run
        self.assertEqual(self.state.local.tokens_used("alice", day), 0)
        self.server.resume()
        await self.recovered
        self.assertEqual(await self.redis_total(day), 4)

    async def test_local_lease_ends_after_redis_returns(self) -> None:
        """alice has 3000 in Redis; 2001 tokens leased on this node while Redis stalls;
        Redis goes on before the answer ends having used 4: Redis still counts 3000, this
        node 4."""
        parts = self.parts()
        day = parts.days.today()
        await self.state.shared.add_tokens("alice", day, 3000)
        await self.stall()
        hold = _Hold()
        run = self.start(parts, hold, 2000)
        await hold.reached
        self.assertEqual(self.state.local.tokens_used("alice", day), 2001)
        self.server.resume()
        await self.recovered
        hold.release.callback(None)
        await run
        self.assertEqual(await self.redis_total(day), 3000)
        self.assertEqual(self.state.local.tokens_used("alice", day), 4)
